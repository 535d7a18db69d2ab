/** The ECR lifecycle policy document type (typed; serialised with JSON.stringify). */

export interface LifecycleSelection {
    readonly tagStatus: "tagged" | "untagged" | "any";
    readonly tagPatternList?: readonly string[];
    readonly countType: "imageCountMoreThan" | "sinceImagePushed";
    readonly countUnit?: "days";
    readonly countNumber: number;
}

export interface LifecycleRule {
    readonly rulePriority: number;
    readonly description: string;
    readonly selection: LifecycleSelection;
    readonly action: { readonly type: "expire" };
}

export interface LifecyclePolicy {
    readonly rules: readonly LifecycleRule[];
}
