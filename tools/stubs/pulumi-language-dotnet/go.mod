// Stand-in for github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3, whose source the Go module
// proxy reachable here refuses (403). pulumi-docker-build only uses codegen.CSharpPackageInfo.
module github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3

go 1.21
