// Package codegen is ml-infra's stand-in for
// github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3/codegen.
//
// pulumi-resource-docker-build imports this package only for the CSharpPackageInfo type, which it
// puts into the "csharp" language section of its schema (consulted when generating a .NET SDK,
// never when deploying). The module proxy here does not serve the module's source, so
// tools/build.sh replaces the module with this directory. Only the fields docker-build sets are
// declared; their JSON names are those of the real type.
package codegen

// CSharpPackageInfo is the C# language section of a package schema.
type CSharpPackageInfo struct {
	PackageReferences    map[string]string `json:"packageReferences,omitempty"`
	RespectSchemaVersion bool              `json:"respectSchemaVersion,omitempty"`
}
