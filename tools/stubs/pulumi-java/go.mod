// Stand-in for github.com/pulumi/pulumi-java, which the Go module proxy reachable here refuses (403).
// pulumi-docker-build only uses java.PackageInfo to describe Java SDK generation in its schema.
module github.com/pulumi/pulumi-java

go 1.21
