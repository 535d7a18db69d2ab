/** Entry point of the policy pack: `pulumi preview --policy-pack policy`. */
import { PolicyPack } from "@pulumi/policy";
import { policyPackArgs } from "./pack";

new PolicyPack("ml-infra", policyPackArgs());
