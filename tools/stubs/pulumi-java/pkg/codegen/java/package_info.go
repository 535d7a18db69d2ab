// Package java is ml-infra's stand-in for github.com/pulumi/pulumi-java/pkg/codegen/java.
//
// pulumi-resource-docker-build imports this package only for the PackageInfo type, which it puts
// into the "java" language section of its schema (consulted when generating a Java SDK, never
// when deploying). The module proxy here does not serve pulumi-java, so tools/build.sh replaces
// the module with this directory. Only the fields docker-build sets are declared; their JSON names
// are those of the real type.
package java

// PackageInfo is the Java language section of a package schema.
type PackageInfo struct {
	BuildFiles                      string            `json:"buildFiles"`
	Dependencies                    map[string]string `json:"dependencies,omitempty"`
	GradleNexusPublishPluginVersion string            `json:"gradleNexusPublishPluginVersion"`
}
