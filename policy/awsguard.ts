/**
 * Pulumi's own AWS policies (@pulumi/awsguard) inside our pack.
 *
 * AWSGuard's `AwsGuard` class is a PolicyPack of its own, and @pulumi/policy
 * serves one pack per process (a second `new PolicyPack` prints "Already
 * serving policy pack" and exits), so it is never constructed here. Instead
 * its policies are taken from its area modules and run as plain resource
 * policies of ours (mandatory, like every other), each through the
 * validation function AWSGuard wrote.
 *
 * AWSGuard 0.3.1 is written against @pulumi/aws v4 and selects resources by
 * v4 type tokens. Most are the same in v7; the load balancers' are not (v4's
 * `aws.elasticloadbalancingv2.Listener` is v7's `aws.lb.Listener`), so a
 * policy of those would never fire on our resources: V7_TYPES maps each such
 * v4 token to the v7 tokens of the same resource, and a policy is run on both.
 *
 * Every AWSGuard policy is either enforced (AWSGUARD_ENFORCED) or disabled
 * with a reason (AWSGUARD_DISABLED); test/awsguard.test.ts checks that the
 * two tables cover every policy the package has, and that each enforced one
 * catches a violating resource.
 */
import type { ReportViolation, ResourceValidation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import * as compute from "@pulumi/awsguard/compute";
import * as database from "@pulumi/awsguard/database";
import * as elasticsearch from "@pulumi/awsguard/elasticsearch";
import * as network from "@pulumi/awsguard/network";
import { PLAIN_HTTP_TAG } from "../components/serve/listener";
import { known } from "./known";
import type { PolicyResource, ResourcePolicy } from "./types";

/** v4 type tokens AWSGuard selects resources by that are spelled differently in @pulumi/aws v7, with the v7 tokens of the same resource. */
export const V7_TYPES: Readonly<Record<string, readonly string[]>> = {
    "aws:elasticloadbalancingv2/listener:Listener": ["aws:lb/listener:Listener", "aws:alb/listener:Listener"],
    "aws:elasticloadbalancingv2/loadBalancer:LoadBalancer": ["aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"],
    "aws:applicationloadbalancing/loadBalancer:LoadBalancer": ["aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"],
    "aws:elasticloadbalancing/loadBalancer:LoadBalancer": ["aws:elb/loadBalancer:LoadBalancer"],
};

interface Enforcement {
    /** Why it is enforced (one line, for the README's security section). */
    readonly why: string;
    /** Resources it does not apply to, and why (the reason is documented beside `why`). */
    readonly exempt?: (r: PolicyResource) => boolean;
}

/** The AWSGuard policies our pack enforces (mandatory), by AWSGuard's name. */
export const AWSGUARD_ENFORCED: Readonly<Record<string, Enforcement>> = {
    "alb-http-to-https-redirection": {
        why: `an HTTP listener redirects to HTTPS, except a listener its stack chose to serve plain HTTP (serve.loadBalancer.protocol: http, tag ${PLAIN_HTTP_TAG}=true); run on v7's aws.lb/aws.alb listeners`,
        exempt: (r) => known(() => (isObj(r.props.tags) ? r.props.tags[PLAIN_HTTP_TAG] : undefined)) === "true",
    },
    "ec2-instance-no-public-ip": { why: "the same invariant as no-public-ip, for aws.ec2.Instance" },
    "encrypted-volumes": { why: "the same invariant as volumes-encrypted, for an aws.ec2.Instance's root and EBS devices" },
    "rds-instance-public-access": { why: "no database reachable from the internet (none today; holds for any the program adds)" },
    "rds-storage-encrypted": { why: "data at rest encrypted, like every volume (none today)" },
    "redshift-cluster-public-access": { why: "no warehouse reachable from the internet (none today; publiclyAccessible must be set to false explicitly)" },
    "dynamodb-table-encryption-enabled": { why: "server-side encryption never turned off (none today)" },
    "elasticsearch-encrypted-at-rest": { why: "data at rest encrypted (none today)" },
    "elasticsearch-in-vpc-only": { why: "no search domain on a public endpoint (none today)" },
};

/** The AWSGuard policies our pack does not run, by AWSGuard's name, each with its reason (one line). */
export const AWSGUARD_DISABLED: Readonly<Record<string, string>> = {
    "apigateway-stage-cached": "no API Gateway in the program; a cache cluster is a cost and freshness choice, not a security rule",
    "apigateway-method-cached-and-encrypted": "no API Gateway in the program; caching is a cost and freshness choice",
    "apigateway-endpoint-type": "no API Gateway in the program; its default allows EDGE only, which would refuse the private endpoint we would use",
    "ec2-instance-detailed-monitoring-enabled": "no aws.ec2.Instance (runners and ECS hosts are launch templates in Auto Scaling groups); 1-minute metrics are a cost choice",
    "ec2-volume-inuse": "asks every aws.ec2.Instance for an extra EBS volume deleted on termination, which is not a rule of ours; no aws.ec2.Instance in the program",
    "elb-logging-enabled":
        "written for v4 tokens, mapped here it would fire on every load balancer; the program has no S3 bucket for ALB access logs yet (follow-up), and the runners' NLB listens TCP (mutual TLS at buildkitd), for which AWS writes no access logs",
    "elb-deletion-protection-enabled": "load balancers hold no data and are rebuilt from the program; deletion protection would make every replacement and dev's pulumi destroy fail (what must survive is protected by protectData)",
    "efs-encrypted": "no EFS in the program; it asks for a customer-managed KMS key, stricter than our rule (encryption at rest, volumes-encrypted)",
    "s3-bucket-logging-enabled": "no S3 bucket in the program (models are read from existing buckets); it reads v4's `loggings`, which v7's aws.s3.Bucket no longer has, so it would flag every bucket",
    "redshift-cluster-configuration": "no Redshift in the program; it reads v4's `logging`, which v7's aws.redshift.Cluster no longer has (aws.redshift.Logging), so it would flag every cluster",
    "redshift-cluster-maintenance-settings": "no Redshift in the program; maintenance windows and snapshot retention are operational choices",
    "rds-instance-backup-enabled": "no RDS in the program; backup retention is chosen per environment (like protectData)",
    "rds-instance-multi-az-enabled": "no RDS in the program; multi-AZ is an availability and cost choice per environment (dev runs single-AZ)",
    "acm-certificate-expiration": "calls the ACM API (no offline plan, AWS credentials inside the pack); the program creates no certificate (it uses one by ARN, which ACM renews)",
    "cmk-backing-key-rotation-enabled": "no KMS key in the program (a model's key is used by ARN); its module loads aws-sdk v2 for its API-calling neighbours",
    "access-keys-rotated": "calls the IAM API; the program creates no access keys (roles only)",
    "mfa-enabled-for-iam-console-access": "calls the IAM API; the program creates no IAM users",
};

// ------------------------------------------------------------------ adapter

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function isValidationPolicy(v: unknown): v is ResourceValidationPolicy {
    if (!isObj(v) || typeof v.name !== "string" || typeof v.description !== "string") return false;
    const validate = v.validateResource;
    return typeof validate === "function" || (Array.isArray(validate) && validate.every((f) => typeof f === "function"));
}

/** The resource policies an AWSGuard area module exports, by name. */
export function awsGuardPoliciesOf(module: object): Map<string, ResourceValidationPolicy> {
    return new Map(Object.values(module).filter(isValidationPolicy).map((p) => [p.name, p]));
}

/** The type token a class (or a validation made for one) carries. */
function pulumiTypeOf(v: unknown): string | undefined {
    const type = (typeof v === "function" || isObj(v)) && "__pulumiType" in v ? v.__pulumiType : undefined;
    return typeof type === "string" && type !== "" ? type : undefined;
}

/** Does a validation written for v4 token `v4` apply to a resource of (v7) type `type`? */
export function appliesTo(v4: string, type: string): boolean {
    return type === v4 || (V7_TYPES[v4] ?? []).includes(type);
}

class NotApplicable extends Error {}

/** Defaults of a policy's config schema (what `getConfig` returns when the stack configures nothing). */
function configDefaults(p: ResourceValidationPolicy): Obj {
    const properties = p.configSchema?.properties ?? {};
    return Object.fromEntries(Object.entries(properties).flatMap(([k, schema]) => (isObj(schema) && "default" in schema ? [[k, schema.default]] : [])));
}

/** The arguments the policy SDK would pass, with the resource presented as the v4 type the validation selects. */
function argsFor(r: PolicyResource, v4: string, p: ResourceValidationPolicy): ResourceValidationArgs {
    const config = configDefaults(p);
    return {
        type: v4,
        props: r.props,
        urn: r.urn,
        name: r.name,
        opts: { protect: false, ignoreChanges: [], aliases: [], customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 }, additionalSecretOutputs: [] },
        stackTags: new Map(),
        isType: (resourceClass: object) => pulumiTypeOf(resourceClass) === v4,
        asType: () => {
            throw new Error(`AWSGuard policy ${p.name}: asType is not offered to wrapped policies (none of 0.3.1 uses it)`);
        },
        getConfig: <T extends object>() => config as T,
        notApplicable: (reason?: string) => {
            throw new NotApplicable(reason);
        },
    };
}

/** An AWSGuard policy as one of our resource policies. */
export function wrapAwsGuardPolicy(p: ResourceValidationPolicy, enforcement: Enforcement): ResourcePolicy {
    const validations: ResourceValidation[] = Array.isArray(p.validateResource) ? p.validateResource : p.validateResource ? [p.validateResource] : [];
    return {
        name: p.name,
        description: `AWSGuard: ${p.description}`,
        check: (r) => {
            if (enforcement.exempt?.(r)) return [];
            const out: string[] = [];
            const report: ReportViolation = (message) => {
                out.push(message);
            };
            for (const validate of validations) {
                const v4 = pulumiTypeOf(validate);
                if (v4 === undefined || !appliesTo(v4, r.type)) continue;
                try {
                    const result = known(() => validate(argsFor(r, v4, p), report));
                    if (result instanceof Promise) throw new Error(`AWSGuard policy ${p.name} is asynchronous; the pack runs synchronous validations only`);
                } catch (error) {
                    if (!(error instanceof NotApplicable)) throw error;
                }
            }
            return out;
        },
    };
}

/** Every AWSGuard policy of the modules our pack loads, by name. */
const LOADED = new Map([compute, database, elasticsearch, network].flatMap((m) => [...awsGuardPoliciesOf(m)]));

/** The enforced AWSGuard policies as resource policies of ours. */
export const AWSGUARD_POLICIES: readonly ResourcePolicy[] = Object.entries(AWSGUARD_ENFORCED).map(([name, enforcement]) => {
    const p = LOADED.get(name);
    if (!p) throw new Error(`@pulumi/awsguard has no policy ${name} in the modules the pack loads (compute, database, elasticsearch, network)`);
    return wrapAwsGuardPolicy(p, enforcement);
});
