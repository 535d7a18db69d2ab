#!/usr/bin/env bash
# Builds (or reuses) the local Pulumi/BuildKit toolchain from Go modules: `npm run tools`.
#
#   tools/build.sh [--only tool[,tool...]] [--force] [--install-plugins] [--help]
#
# Versions come from tools/versions.json (checked against package.json). Binaries are kept
# outside the repository in ${ML_INFRA_TOOLS_DIR:-$HOME/.cache/ml-infra/tools}, keyed by version
# and build recipe, so a second run (or CI on the same machine) reuses them. Progress and the
# summary go to stderr; stdout gets only the line to eval, e.g.
#
#   eval "$(npm run --silent tools)"      or      . "${ML_INFRA_TOOLS_DIR:-$HOME/.cache/ml-infra/tools}/env.sh"
#
# --install-plugins also registers the provider binaries in the Pulumi plugin cache of
# ${PULUMI_HOME:-~/.pulumi} (`pulumi plugin install resource <name> <version> --file ...`).
#
# Layout of the tools directory:
#   store/<tool>/<version>-<recipe hash>/   binaries, build.log, src/ (the generated Go module)
#   bin/                                     hard links to the current binaries (put this on PATH)
#   env.sh, manifest.json                    PATH line; versions and paths for scripts
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
versions_file="$here/versions.json"
tools_dir="${ML_INFRA_TOOLS_DIR:-${HOME:?HOME is not set}/.cache/ml-infra/tools}"

all_tools=(pulumi pulumi-language-nodejs docker-build buildkit dockerfile-frontend buildx docker tls)

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    echo "tools: ${all_tools[*]}" >&2
}

log() { printf '%s\n' "$*" >&2; }
die() {
    printf 'tools: error: %s\n' "$*" >&2
    exit 1
}

only=""
force=0
install_plugins=0
while (($#)); do
    case "$1" in
    --only)
        only="${2:?--only needs a tool list}"
        shift 2
        ;;
    --only=*)
        only="${1#--only=}"
        shift
        ;;
    --force)
        force=1
        shift
        ;;
    --install-plugins)
        install_plugins=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage
        die "unknown argument: $1"
        ;;
    esac
done

command -v go >/dev/null || die "go is not on PATH (Go >= 1.26.0 is needed)"
command -v node >/dev/null || die "node is not on PATH"

# ---------------------------------------------------------------------------------------------
# Versions: tools/versions.json, cross-checked against package.json.
declare -A V=()
# The JavaScript below uses template literals; nothing in it is meant to be expanded by bash.
# shellcheck disable=SC2016
while IFS=$'\t' read -r key value; do
    V["$key"]="$value"
done < <(node -e '
const v = require(process.argv[1]);
for (const [tool, o] of Object.entries(v.tools))
  for (const [k, x] of Object.entries(o))
    if (!k.startsWith("$")) console.log(`${tool}.${k}\t${x}`);
' "$versions_file")

# shellcheck disable=SC2016
mismatch="$(node -e '
const v = require(process.argv[1]);
const pkg = require(process.argv[2]);
const deps = { ...pkg.devDependencies, ...pkg.dependencies };
for (const [tool, o] of Object.entries(v.tools)) {
  if (!o.npm) continue;
  if (deps[o.npm] !== o.version)
    console.log(`  ${tool}: tools/versions.json pins ${o.version}, package.json has ${o.npm}@${deps[o.npm] ?? "(missing)"}`);
}
' "$versions_file" "$repo/package.json")"
if [[ -n "$mismatch" ]]; then
    die "tools/versions.json and package.json disagree (edit both so they are equal):
$mismatch"
fi

selected() {
    local t="$1"
    if [[ -n "$only" ]]; then
        [[ ",$only," == *",$t,"* ]]
    else
        [[ "${V[$t.enabled]:-true}" != "false" ]]
    fi
}
if [[ -n "$only" ]]; then
    IFS=',' read -r -a wanted <<<"$only"
    for t in "${wanted[@]}"; do
        [[ " ${all_tools[*]} " == *" $t "* ]] || die "unknown tool '$t' (tools: ${all_tools[*]})"
    done
fi

# ---------------------------------------------------------------------------------------------
# Go environment: the local toolchain only, module mode, no workspace.
go_version="$(GOTOOLCHAIN=local go env GOVERSION)"
min_go="1.26.0"
if [[ "$(printf '%s\n%s\n' "$min_go" "${go_version#go}" | sort -V | head -n1)" != "$min_go" ]]; then
    die "Go ${go_version#go} is too old: pulumi-docker-build ${V[docker-build.version]} needs Go >= $min_go"
fi
export GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod -buildvcs=false"

mkdir -p "$tools_dir/store"
tools_dir="$(cd "$tools_dir" && pwd)"

if command -v flock >/dev/null; then
    exec 9>"$tools_dir/.lock"
    if ! flock -n 9; then
        log "tools: waiting for another build in $tools_dir ..."
        flock 9
    fi
fi

now() { printf '%s' "${EPOCHREALTIME:-$(date +%s)}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", b - a }'; }

# ---------------------------------------------------------------------------------------------
# Recipes. Each sets:
#   R_VERSION  displayed version        R_REQUIRE  "module version" lines
#   R_REPLACE  "old => new version"     R_EXCLUDE  "module version" lines
#   R_PKGS     "package binary" lines   R_TAGS     build tags
#   R_LDFLAGS  linker flags             R_SRC      directory of our own Go sources (module root)
#   R_ENV      extra build environment (e.g. CGO_ENABLED=0 for a static binary)
#   R_TAGFILE  "module file": R_TAGS must equal the build tags listed in this file of that module
#   R_SHARE    "module file" lines: upstream files kept with the binaries, in share/<tool>/ of the tools directory
#   R_STUBS    "module dir" lines: modules the proxy refuses, replaced by our own stand-ins (tools/stubs)
#   R_CHECK    "binary arg... ; expected substring" smoke test (optional)
recipe() {
    R_VERSION="" R_REQUIRE="" R_REPLACE="" R_EXCLUDE="" R_PKGS="" R_TAGS="" R_LDFLAGS="-s -w" R_SRC="" R_STUBS="" R_CHECK="" R_ENV="" R_TAGFILE="" R_SHARE=""
    local pv="${V[pulumi.version]}"
    case "$1" in
    pulumi)
        R_VERSION="$pv"
        R_REQUIRE="github.com/pulumi/pulumi/pkg/v3 v$pv
github.com/pulumi/pulumi/sdk/v3 v$pv"
        # pkg/v3's own go.mod replaces the clipboard module; a dependent module must repeat it.
        R_REPLACE="github.com/atotto/clipboard => ${V[pulumi.clipboardReplace]}"
        R_PKGS="github.com/pulumi/pulumi/pkg/v3/cmd/pulumi pulumi"
        R_TAGS="osusergo,grpcnotrace"
        R_LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$pv"
        R_CHECK="pulumi version;v$pv"
        ;;
    pulumi-language-nodejs)
        case "${V[pulumi-language-nodejs.impl]}" in
        ml-infra)
            R_VERSION="$pv+mlinfra"
            R_REQUIRE="github.com/pulumi/pulumi/sdk/v3 v$pv"
            R_SRC="$here/langhost"
            R_PKGS=". pulumi-language-nodejs"
            R_LDFLAGS="-s -w -X main.version=$pv+mlinfra"
            R_CHECK="pulumi-language-nodejs -version;$pv+mlinfra"
            ;;
        sdk)
            local sv="${V[pulumi-language-nodejs.upstreamSdkVersion]}"
            R_VERSION="$sv (upstream sdk/v3)"
            R_REQUIRE="github.com/pulumi/pulumi/sdk/v3 v$sv"
            R_PKGS="github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs pulumi-language-nodejs"
            R_TAGS="osusergo,grpcnotrace"
            R_LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$sv"
            ;;
        *) die "tools/versions.json: pulumi-language-nodejs.impl must be ml-infra or sdk" ;;
        esac
        ;;
    docker-build)
        local v="${V[docker-build.version]}"
        R_VERSION="$v"
        R_REQUIRE="github.com/pulumi/pulumi-docker-build v$v"
        # Its provider imports these two only for the types of two schema "language" sections
        # (SDK generation metadata); the proxy refuses their source (403), see tools/stubs.
        R_STUBS="github.com/pulumi/pulumi-java $here/stubs/pulumi-java
github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3 $here/stubs/pulumi-language-dotnet"
        R_PKGS="github.com/pulumi/pulumi-docker-build/provider/cmd/pulumi-resource-docker-build pulumi-resource-docker-build"
        R_LDFLAGS="-s -w -X github.com/pulumi/pulumi-docker-build/provider.Version=$v"
        ;;
    buildkit)
        local v="${V[buildkit.version]}"
        R_VERSION="$v"
        R_REQUIRE="github.com/moby/buildkit v$v"
        # buildkit's go.mod excludes these; a dependent module must repeat the exclude block.
        R_EXCLUDE="github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2"
        R_PKGS="github.com/moby/buildkit/cmd/buildkitd buildkitd
github.com/moby/buildkit/cmd/buildctl buildctl"
        R_TAGS="osusergo,netgo"
        R_LDFLAGS="-s -w -X github.com/moby/buildkit/version.Version=v$v -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit"
        R_CHECK="buildkitd --version;v$v
buildctl --version;v$v"
        ;;
    dockerfile-frontend)
        # The Dockerfile frontend BuildKit ships, from the same buildkit module, with the build
        # tags of its channel (labs: RUN --device, --security, COPY --parents, --exclude), static
        # like the upstream image's binary. scripts/docker-env.sh packages it as the image
        # docker/dockerfile:<version>-<channel> in the local registry (docker.io mirrors to it).
        local bv="${V[buildkit.version]}" fv="${V[dockerfile-frontend.version]}-${V[dockerfile-frontend.channel]}"
        R_VERSION="$fv"
        R_REQUIRE="github.com/moby/buildkit v$bv"
        R_EXCLUDE="github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2"
        R_PKGS="github.com/moby/buildkit/frontend/dockerfile/cmd/dockerfile-frontend dockerfile-frontend"
        R_TAGS="${V[dockerfile-frontend.tags]},netgo,static_build,osusergo"
        R_TAGFILE="github.com/moby/buildkit frontend/dockerfile/release/${V[dockerfile-frontend.channel]}/tags"
        R_ENV="CGO_ENABLED=0"
        # Its image's labels and entrypoint (the release stage) come from here, not from us.
        R_SHARE="github.com/moby/buildkit frontend/dockerfile/cmd/dockerfile-frontend/Dockerfile"
        local pkg=github.com/moby/buildkit/frontend/dockerfile/cmd/dockerfile-frontend
        R_LDFLAGS="-s -w -X main.Version=$fv -X main.Revision=buildkit-v$bv -X main.Package=$pkg"
        R_CHECK="dockerfile-frontend -version;$pkg $fv"
        ;;
    buildx)
        local v="${V[buildx.version]}"
        R_VERSION="$v"
        R_REQUIRE="github.com/docker/buildx v$v"
        R_PKGS="github.com/docker/buildx/cmd/buildx buildx"
        R_LDFLAGS="-s -w -X github.com/docker/buildx/version.Version=v$v -X github.com/docker/buildx/version.Package=github.com/docker/buildx"
        R_CHECK="buildx version;v$v"
        ;;
    docker)
        local v="${V[docker.version]}"
        R_VERSION="$v"
        R_REQUIRE="github.com/pulumi/pulumi-docker/provider/v5 v$v"
        R_PKGS="github.com/pulumi/pulumi-docker/provider/v5/cmd/pulumi-resource-docker pulumi-resource-docker"
        R_LDFLAGS="-s -w -X github.com/pulumi/pulumi-docker/provider/v5/pkg/version.Version=$v"
        ;;
    tls)
        local v="${V[tls.version]}"
        R_VERSION="$v"
        R_REQUIRE="github.com/pulumi/pulumi-tls/provider/v5 v$v"
        R_PKGS="github.com/pulumi/pulumi-tls/provider/v5/cmd/pulumi-resource-tls pulumi-resource-tls"
        R_LDFLAGS="-s -w -X github.com/pulumi/pulumi-tls/provider/v5/version.Version=$v"
        ;;
    *) die "no recipe for $1" ;;
    esac
}

# The store key changes whenever anything that shapes the binaries changes.
recipe_key() {
    local tool="$1" h
    h="$(
        {
            printf '%s\n' "$tool" "$go_version" "$R_VERSION" "$R_REQUIRE" "$R_REPLACE" "$R_EXCLUDE" "$R_PKGS" "$R_TAGS" "$R_LDFLAGS" ${R_ENV:+"$R_ENV"} ${R_SHARE:+"$R_SHARE"}
            local dirs=() mod dir
            [[ -n "$R_SRC" ]] && dirs+=("$R_SRC")
            while read -r mod dir; do
                [[ -n "$mod" ]] && printf '%s\n' "$mod" && dirs+=("$dir")
            done <<<"$R_STUBS"
            if ((${#dirs[@]})); then
                find "${dirs[@]}" -type f \( -name '*.go' -o -name go.mod \) -print0 | LC_ALL=C sort -z | xargs -0 cat
            fi
        } | sha256sum | cut -c1-12
    )"
    printf '%s-%s' "${R_VERSION%% *}" "$h"
}

write_module() {
    local dir="$1" tool="$2" line
    {
        printf 'module mlinfra.local/tools/%s\n\ngo 1.26\n\n' "$tool"
        while read -r line; do
            [[ -n "$line" ]] && printf 'require %s\n' "$line"
        done <<<"$R_REQUIRE"
        while read -r line; do
            [[ -n "$line" ]] && printf 'replace %s\n' "$line"
        done <<<"$R_REPLACE"
        while read -r line; do
            [[ -n "$line" ]] && printf 'exclude %s\n' "$line"
        done <<<"$R_EXCLUDE"
        local mod stub
        while read -r mod stub; do
            [[ -n "$mod" ]] || continue
            mkdir -p "$dir/stubs"
            cp -R "$stub" "$dir/stubs/"
            printf 'replace %s => ./stubs/%s\n' "$mod" "$(basename "$stub")"
        done <<<"$R_STUBS"
    } >"$dir/go.mod"
    if [[ -n "$R_SRC" ]]; then
        cp "$R_SRC"/*.go "$dir/"
    else
        {
            printf '//go:build tools\n\n// Package tools pins the main packages built from this module.\npackage tools\n\nimport (\n'
            while read -r pkg _; do
                [[ -n "$pkg" ]] && printf '\t_ "%s"\n' "$pkg"
            done <<<"$R_PKGS"
            printf ')\n'
        } >"$dir/tools.go"
    fi
}

# build TOOL STOREDIR: builds into STOREDIR.tmp and renames it into place when everything worked.
build() {
    local tool="$1" dest="$2" tmp="$2.tmp.$$" pkg bin
    rm -rf "$dest".tmp.* # leftovers of interrupted runs (we hold the lock)
    mkdir -p "$tmp/src"
    write_module "$tmp/src" "$tool"
    log "tools: building $tool $R_VERSION ..."
    if ! (
        cd "$tmp/src"
        set -x
        go mod tidy
        if [[ -n "$R_TAGFILE" ]]; then
            read -r mod file <<<"$R_TAGFILE"
            want="$(tr -s ' \n' ',,' <"$(go list -m -f '{{.Dir}}' "$mod")/$file" | sed 's/,$//')"
            [[ ",$R_TAGS," == *",$want,"* ]] || { echo "build tags $R_TAGS do not match $mod/$file: $want" >&2; exit 1; }
        fi
        if [[ -n "$R_ENV" ]]; then
            read -r -a build_env <<<"$R_ENV" # NAME=value words
            export "${build_env[@]}"
        fi
        while read -r pkg bin; do
            [[ -n "$pkg" ]] || continue
            go build ${R_TAGS:+-tags "$R_TAGS"} -ldflags "$R_LDFLAGS" -o "$tmp/$bin" "$pkg"
        done <<<"$R_PKGS"
        while read -r mod file; do
            [[ -n "$mod" ]] || continue
            mkdir -p "$tmp/share"
            cp "$(go list -m -f '{{.Dir}}' "$mod")/$file" "$tmp/share/"
            chmod u+w "$tmp/share/$(basename "$file")"
        done <<<"$R_SHARE"
    ) >"$tmp/build.log" 2>&1; then
        rm -rf "$dest.failed"
        mv "$tmp" "$dest.failed"
        log "tools: $tool FAILED; end of $dest.failed/build.log:"
        tail -n 25 "$dest.failed/build.log" | sed 's/^/    /' >&2
        return 1
    fi
    rm -rf "$dest.failed"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    touch "$dest/.complete"
}

check() {
    local dir="$1" cmd want out
    while IFS=';' read -r cmd want; do
        [[ -n "$cmd" ]] || continue
        read -r -a argv <<<"$cmd"
        out="$(PULUMI_SKIP_UPDATE_CHECK=true "$dir/${argv[0]}" "${argv[@]:1}" 2>&1)" || true
        if [[ "$out" != *"$want"* ]]; then
            log "tools: smoke test failed: '$cmd' printed '${out%%$'\n'*}', expected it to contain '$want'"
            return 1
        fi
    done <<<"$R_CHECK"
}

# complete DIR: a finished build whose binaries are all still there.
complete() {
    local dir="$1" bin
    [[ -f "$dir/.complete" ]] || return 1
    while read -r _ bin; do
        [[ -z "$bin" || -x "$dir/$bin" ]] || return 1
    done <<<"$R_PKGS"
}

# ---------------------------------------------------------------------------------------------
declare -a rows=()
declare -A bin_of=() version_of=() plugin_version=() share_of=()
failed=0
t_start="$(now)"

for tool in "${all_tools[@]}"; do
    recipe "$tool"
    key="$(recipe_key "$tool")"
    dest="$tools_dir/store/$tool/$key"
    t0="$(now)"
    status=""
    # --force rebuilds the selected tools; the others are reused as they are.
    if complete "$dest" && { ((force == 0)) || ! selected "$tool"; }; then
        status="reused"
    elif selected "$tool"; then
        if build "$tool" "$dest" && check "$dest"; then
            status="built"
        else
            status="FAILED"
            failed=1
        fi
    else
        continue
    fi
    took="$(elapsed "$t0" "$(now)")"
    if [[ "$status" != "FAILED" ]]; then
        version_of["$tool"]="$R_VERSION"
        while read -r _ bin; do
            [[ -n "$bin" ]] || continue
            bin_of["$bin"]="$dest/$bin"
            [[ "$bin" == pulumi-resource-* ]] && plugin_version["$bin"]="$R_VERSION"
        done <<<"$R_PKGS"
        [[ -d "$dest/share" ]] && share_of["$tool"]="$dest/share"
    fi
    rows+=("$(printf '%-24s %-22s %-7s %8s  %s' "$tool" "$R_VERSION" "$status" "$took" "$dest")")
done

# bin/: hard links (copies across file systems) so that the CLI finds pulumi-language-nodejs
# next to its own executable, where it looks first (no "using ... from \$PATH" warning).
bin_dir="$tools_dir/bin"
tmp_bin="$tools_dir/bin.tmp.$$"
rm -rf "$tmp_bin"
mkdir -p "$tmp_bin"
for bin in "${!bin_of[@]}"; do
    ln -f "${bin_of[$bin]}" "$tmp_bin/$bin" 2>/dev/null || cp -f "${bin_of[$bin]}" "$tmp_bin/$bin"
done
mkdir -p "$tools_dir/cli-plugins"
if [[ -n "${bin_of[buildx]:-}" ]]; then
    ln -f "${bin_of[buildx]}" "$tools_dir/cli-plugins/docker-buildx" 2>/dev/null ||
        cp -f "${bin_of[buildx]}" "$tools_dir/cli-plugins/docker-buildx"
fi
# share/<tool>: the upstream files a tool's recipe keeps (R_SHARE), of its current build.
mkdir -p "$tools_dir/share"
for tool in "${!share_of[@]}"; do
    ln -sfn "${share_of[$tool]}" "$tools_dir/share/$tool"
done
rm -rf "$bin_dir.old"
[[ -d "$bin_dir" ]] && mv "$bin_dir" "$bin_dir.old"
mv "$tmp_bin" "$bin_dir"
rm -rf "$bin_dir.old"

cat >"$tools_dir/env.sh" <<EOF
# Generated by tools/build.sh (npm run tools). Source it: . "$tools_dir/env.sh"
export ML_INFRA_TOOLS_DIR='$tools_dir'
export ML_INFRA_TOOLS_BIN='$bin_dir'
case ":\$PATH:" in
*":$bin_dir:"*) ;;
*) export PATH='$bin_dir':"\$PATH" ;;
esac
EOF

{
    printf '{\n  "toolsDir": "%s",\n  "bin": "%s",\n  "env": "%s",\n  "tools": {' "$tools_dir" "$bin_dir" "$tools_dir/env.sh"
    sep=""
    for tool in "${!version_of[@]}"; do
        printf '%s\n    "%s": "%s"' "$sep" "$tool" "${version_of[$tool]}"
        sep=","
    done
    printf '\n  },\n  "binaries": {'
    sep=""
    for bin in $(printf '%s\n' "${!bin_of[@]}" | sort); do
        printf '%s\n    "%s": "%s"' "$sep" "$bin" "$bin_dir/$bin"
        sep=","
    done
    printf '\n  }\n}\n'
} >"$tools_dir/manifest.json"

if ((install_plugins)); then
    [[ -x "$bin_dir/pulumi" ]] || die "--install-plugins needs the pulumi CLI, which is not built"
    for bin in "${!plugin_version[@]}"; do
        name="${bin#pulumi-resource-}"
        log "tools: pulumi plugin install resource $name ${plugin_version[$bin]} (PULUMI_HOME=${PULUMI_HOME:-~/.pulumi})"
        PULUMI_SKIP_UPDATE_CHECK=true "$bin_dir/pulumi" plugin install resource "$name" "${plugin_version[$bin]}" \
            --file "$bin_dir/$bin" --reinstall >&2 || failed=1
    done
fi

log ""
log "$(printf '%-24s %-22s %-7s %8s  %s' tool version status time 'store directory')"
for row in "${rows[@]}"; do log "$row"; done
log ""
log "total $(elapsed "$t_start" "$(now)"); binaries: $bin_dir"
for bin in $(printf '%s\n' "${!bin_of[@]}" | sort); do log "  $bin"; done
if ! command -v runc >/dev/null; then
    log "note: buildkitd needs runc at run time and none is on PATH (Debian: apt-get install runc)."
fi
log "docker CLI plugin: mkdir -p ~/.docker/cli-plugins && ln -sf '$tools_dir/cli-plugins/docker-buildx' ~/.docker/cli-plugins/"
log "put them on PATH:  . '$tools_dir/env.sh'    (or: eval \"\$(npm run --silent tools)\")"

printf '. %q\n' "$tools_dir/env.sh"
exit "$failed"
