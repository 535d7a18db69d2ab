// Command pulumi-language-nodejs is ml-infra's own minimal Node.js language host for the Pulumi CLI.
//
// Why it exists: the upstream host for Pulumi 3.248 lives in its own Go module
// (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3) that the Go module proxy
// reachable here does not serve, and the last host that can be built from a served module
// (sdk/v3 v3.68.0) cannot run policy packs (its RunPlugin answers "not supported"), which
// `pulumi preview --policy-pack policy` needs. See tools/README.md.
//
// Scope: it implements what the CLI needs to run TypeScript programs and policy packs that
// already have their node_modules installed:
//
//   - Handshake, GetPluginInfo, About
//   - GetRequiredPlugins / GetRequiredPackages: report nothing (plugins come from PATH)
//   - GetProgramDependencies: reports nothing; InstallDependencies: does nothing (npm does it)
//   - Run: `node [nodeargs] <@pulumi/pulumi/cmd/run> --monitor ... <entry point> [args]`,
//     with PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS / PULUMI_NODEJS_TYPESCRIPT set
//   - RunPlugin: `node <@pulumi/pulumi/cmd/run-policy-pack> <engine> <dir>` for analyzers and
//     `node <@pulumi/pulumi/cmd/run-plugin> <dir> [args]` for resource plugins, streaming output.
//
// Everything else (code generation, templates, pack, debugging) answers Unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// version is set at build time (-X main.version=...).
var version = "0.0.0-dev"

const (
	// The Node.js SDK exits with this code after it has already shown the user an actionable
	// error; the engine must then not print another one ("bail").
	exitAfterLoggedError = 32

	runModule        = "@pulumi/pulumi/cmd/run"
	runPolicyModule  = "@pulumi/pulumi/cmd/run-policy-pack"
	runPluginModule  = "@pulumi/pulumi/cmd/run-plugin"
	runPathOverride  = "PULUMI_LANGUAGE_NODEJS_RUN_PATH"
	configEnv        = "PULUMI_CONFIG"
	configSecretsEnv = "PULUMI_CONFIG_SECRET_KEYS"
)

// flags are the command-line options older CLIs passed; the current CLI passes only the engine
// address and sends runtime options in ProgramInfo.options, which take precedence.
type flags struct {
	tracing    string
	typescript bool
	tsconfig   string
	nodeargs   string
}

func main() {
	var f flags
	fs := flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	fs.StringVar(&f.tracing, "tracing", "", "Zipkin-compatible tracing endpoint")
	fs.BoolVar(&f.typescript, "typescript", true, "run TypeScript with ts-node")
	fs.StringVar(&f.tsconfig, "tsconfig", "", "path of the tsconfig file to use")
	fs.StringVar(&f.nodeargs, "nodeargs", "", "arguments for the node process")
	fs.String("root", "", "ignored (project root; sent in ProgramInfo)")
	fs.String("packagemanager", "", "ignored (dependencies are installed with npm)")
	printVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *printVersion {
		fmt.Println(version)
		return
	}

	nodeBin, err := exec.LookPath("node")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not find node on $PATH: %v\n", err)
		os.Exit(1)
	}

	host := &languageHost{nodeBin: nodeBin, flags: f}
	if args := fs.Args(); len(args) > 0 {
		host.engineAddress = args[0]
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: listen: %v\n", err)
		os.Exit(1)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(400 * 1024 * 1024))
	pulumirpc.RegisterLanguageRuntimeServer(srv, host)

	// The CLI reads the port from the first line of stdout.
	fmt.Printf("%d\n", lis.Addr().(*net.TCPAddr).Port)
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: serve: %v\n", err)
		os.Exit(1)
	}
}

type languageHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	nodeBin string
	flags   flags

	mu            sync.Mutex
	engineAddress string
}

func (h *languageHost) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

func (h *languageHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *languageHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

func (h *languageHost) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *languageHost) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *languageHost) GetProgramDependencies(
	context.Context, *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	return &pulumirpc.GetProgramDependenciesResponse{}, nil
}

func (h *languageHost) InstallDependencies(
	_ *pulumirpc.InstallDependenciesRequest, srv grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	msg := "ml-infra's pulumi-language-nodejs does not install dependencies; run `npm ci` yourself.\n"
	return srv.Send(&pulumirpc.InstallDependenciesResponse{Stderr: []byte(msg)})
}

func (h *languageHost) About(ctx context.Context, _ *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	out, err := exec.CommandContext(ctx, h.nodeBin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("node --version: %w", err)
	}
	return &pulumirpc.AboutResponse{
		Executable: h.nodeBin,
		Version:    strings.TrimSpace(string(out)),
		Metadata:   map[string]string{"host": "ml-infra minimal pulumi-language-nodejs " + version},
	}, nil
}

// options are the runtime options of Pulumi.yaml (runtime.options), with the flags as defaults.
type options struct {
	typescript bool
	tsconfig   string
	nodeargs   []string
}

func (h *languageHost) options(s *structpb.Struct) options {
	o := options{typescript: h.flags.typescript, tsconfig: h.flags.tsconfig, nodeargs: strings.Fields(h.flags.nodeargs)}
	m := s.AsMap()
	if v, ok := m["typescript"]; ok {
		switch t := v.(type) {
		case bool:
			o.typescript = t
		case string:
			o.typescript = t != "false"
		}
	}
	if v, ok := m["tsconfig"].(string); ok {
		o.tsconfig = v
	}
	if v, ok := m["nodeargs"].(string); ok {
		o.nodeargs = strings.Fields(v)
	}
	return o
}

// resolveModule finds a module of the program's @pulumi/pulumi, resolving from dir as Node would.
func (h *languageHost) resolveModule(ctx context.Context, dir, module string) (string, error) {
	if module == runModule {
		if p := os.Getenv(runPathOverride); p != "" {
			module = p
		}
	}
	script := "process.stdout.write(require.resolve(process.argv[1]))"
	cmd := exec.CommandContext(ctx, h.nodeBin, "-e", script, module)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("could not resolve %s from %s (is @pulumi/pulumi installed? run npm ci): %w: %s",
			module, dir, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (h *languageHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	programDir := info.GetProgramDirectory()
	if programDir == "" {
		programDir = req.GetPwd()
	}
	if programDir == "" {
		var err error
		if programDir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	entry := info.GetEntryPoint()
	if entry == "" {
		entry = req.GetProgram()
	}
	if entry == "" {
		entry = "."
	}
	opts := h.options(info.GetOptions())

	runPath, err := h.resolveModule(ctx, programDir, runModule)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	args := append([]string{}, opts.nodeargs...)
	args = append(args, runPath)
	flag := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name+"="+value)
		}
	}
	flag("monitor", req.GetMonitorAddress())
	flag("engine", h.engine())
	flag("organization", req.GetOrganization())
	flag("project", req.GetProject())
	flag("stack", req.GetStack())
	flag("pwd", programDir)
	flag("root-directory", info.GetRootDirectory())
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 0 {
		flag("parallel", strconv.Itoa(int(req.GetParallel())))
	}
	flag("tracing", h.flags.tracing)
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(orEmpty(req.GetConfig()))
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secrets, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), configEnv+"="+string(config), configSecretsEnv+"="+string(secrets))
	if opts.typescript {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if opts.tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+opts.tsconfig)
	}

	cmd := exec.CommandContext(ctx, h.nodeBin, args...)
	cmd.Dir = programDir
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if exit.ExitCode() == exitAfterLoggedError {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exit.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func (h *languageHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, srv grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	ctx := srv.Context()
	info := req.GetInfo()
	dir := info.GetProgramDirectory()
	if dir == "" {
		dir = req.GetProgram()
	}
	if dir == "" {
		return status.Error(codes.InvalidArgument, "RunPlugin: no program directory")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(req.GetPwd(), dir)
	}
	opts := h.options(info.GetOptions())

	var args []string
	switch req.GetKind() {
	case "analyzer":
		path, err := h.resolveModule(ctx, dir, runPolicyModule)
		if err != nil {
			return err
		}
		// run-policy-pack <engine-address> <program>
		args = append(append(append([]string{}, opts.nodeargs...), path), req.GetArgs()...)
		args = append(args, dir)
	case "resource", "":
		path, err := h.resolveModule(ctx, dir, runPluginModule)
		if err != nil {
			return err
		}
		// run-plugin <program> [args]
		args = append(append([]string{}, opts.nodeargs...), path, dir)
		args = append(args, req.GetArgs()...)
	default:
		return status.Errorf(codes.Unimplemented, "RunPlugin: plugin kind %q is not supported", req.GetKind())
	}

	env := req.GetEnv()
	if len(env) == 0 {
		env = os.Environ()
	}
	if opts.typescript {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}

	cmd := exec.CommandContext(ctx, h.nodeBin, args...)
	cmd.Dir = dir
	cmd.Env = env

	var sendMu sync.Mutex
	send := func(r *pulumirpc.RunPluginResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return srv.Send(r)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	pump := func(r io.Reader, wrap func([]byte) *pulumirpc.RunPluginResponse) {
		defer wg.Done()
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				chunk := append([]byte(nil), buf[:n]...)
				if sendErr := send(wrap(chunk)); sendErr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go pump(stdout, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}}
	})
	go pump(stderr, func(b []byte) *pulumirpc.RunPluginResponse {
		return &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}}
	})
	wg.Wait()

	code := 0
	if err := cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return err
		}
		code = exit.ExitCode()
	}
	return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)}})
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
