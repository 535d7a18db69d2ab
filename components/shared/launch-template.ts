/**
 * The parts every launch template of the program shares (pure): IMDSv2 only
 * with hop limit 1, one network interface with no public IP, an encrypted gp3
 * root volume.
 */

/** IMDSv2 only, hop limit 1: a container or build step one hop away cannot read instance credentials. */
export const IMDSV2_ONLY = {
    httpEndpoint: "enabled",
    httpTokens: "required",
    httpPutResponseHopLimit: 1,
    instanceMetadataTags: "disabled",
} as const;

/** One network interface in the given security group, never with a public IP. */
export function privateNetworkInterfaces<T>(securityGroupId: T) {
    return [{ deviceIndex: 0, associatePublicIpAddress: "false", deleteOnTermination: "true", securityGroups: [securityGroupId] }];
}

/** An encrypted gp3 root volume, deleted with the instance. */
export function encryptedRootVolume(o: { readonly deviceName: string; readonly sizeGiB: number; readonly iops?: number; readonly throughputMiBps?: number }) {
    return [
        {
            deviceName: o.deviceName,
            ebs: {
                volumeSize: o.sizeGiB,
                volumeType: "gp3",
                iops: o.iops,
                throughput: o.throughputMiBps,
                encrypted: "true",
                deleteOnTermination: "true",
            },
        },
    ];
}
