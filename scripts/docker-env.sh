#!/usr/bin/env bash
# Makes this machine ready for the real-Docker tests and the build-cache benchmark,
# without pulling any image from a hub:
#
#   1. Debian packages: docker.io, docker-registry, busybox-static, debootstrap, curl, runc, openssl
#   2. dockerd (Debian's engine 20.10, BuildKit builds with /usr/bin/docker)
#   3. a registry (Debian's registry:2) listening on 127.0.0.1:5000 only
#   4. the base image 127.0.0.1:5000/debian:bookworm-slim, made with debootstrap
#      from the Debian mirror in /etc/apt and slimmed like the official image
#   5. the sidecar image 127.0.0.1:5000/busybox:static (busybox-static, nothing else)
#   6. the Dockerfile frontend image 127.0.0.1:5000/docker/dockerfile:<version>-labs, the
#      image `# syntax=docker/dockerfile:<version>-labs` names, made from the frontend binary
#      `npm run tools` builds (FROM scratch, the labels and entrypoint of the upstream image);
#      the local runner mirrors docker.io to this registry
#   7. a smoke test: a container of the base image runs
#   8. the local BuildKit runner (scripts/local-runner.ts start): buildkitd v0.23 on
#      127.0.0.1:1234 with mutual TLS and the buildx builder ml-local, made by the
#      same code as the build stack's runner pools (needs `npm run tools` first)
#
# Idempotent: every step first checks whether its work is already done, and
# says so. Prints what it did with timings. Exits non-zero with the reason
# when something cannot be made ready (e.g. Docker cannot start here).
#
# Environment:
#   DOCKER_ENV_STATE   state dir (logs, pid files, registry config); default /var/lib/ml-infra-docker
#   DOCKER_ENV_REBUILD_BASE=1   re-make the base and sidecar images even if the registry has them
#   ML_INFRA_TOOLS_BIN  where `npm run tools` put the binaries; default ~/.cache/ml-infra/tools/bin
#                       of the user who ran sudo (or of root)
set -euo pipefail

REGISTRY=127.0.0.1:5000
BASE_REPO=debian
BASE_TAG=bookworm-slim
BASE_REF="$REGISTRY/$BASE_REPO:$BASE_TAG"
BUSYBOX_REPO=busybox
BUSYBOX_TAG=static
BUSYBOX_REF="$REGISTRY/$BUSYBOX_REPO:$BUSYBOX_TAG"
SUITE=bookworm
PACKAGES=(docker.io docker-registry busybox-static debootstrap curl runc openssl)
STATE="${DOCKER_ENV_STATE:-/var/lib/ml-infra-docker}"
DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=1

T0=$(date +%s.%N)
TMPDIRS=()
cleanup() { local d; for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT

log() { printf '[docker-env] %s\n' "$*"; }
fail() {
  printf '[docker-env] FAILED: %s\n' "$*" >&2
  exit 1
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
# record STEP WHAT START: one line per step, with its time
record() { log "$(printf '%-10s %-58s %s' "$1" "$2" "$(elapsed "$3")")"; }

registry_up() { curl -fsS --max-time 2 "http://$REGISTRY/v2/" >/dev/null 2>&1; }
# in_registry REPO TAG: the registry has a manifest for REPO:TAG
in_registry() {
  curl -fsS --max-time 5 -o /dev/null \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null
}
docker_up() { "$DOCKER" info >/dev/null 2>&1; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------- 1. packages
step_packages() {
  local start missing=() p
  start=$(date +%s.%N)
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    record packages "already installed: ${PACKAGES[*]}" "$start"
    return
  fi
  [ "$(id -u)" -eq 0 ] || fail "packages ${missing[*]} are missing and installing them needs root"
  log "installing ${missing[*]} (apt-get update first)"
  apt-get update >"$STATE/apt.log" 2>&1 || fail "apt-get update failed (see $STATE/apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1 \
    || fail "apt-get install ${missing[*]} failed (see $STATE/apt.log)"
  record packages "installed ${missing[*]}" "$start"
}

# ---------------------------------------------------------------- 2. dockerd
step_dockerd() {
  local start i
  start=$(date +%s.%N)
  [ -x "$DOCKER" ] || fail "$DOCKER is missing (Debian's docker.io client)"
  if docker_up; then
    record dockerd "already running ($("$DOCKER" version -f '{{.Server.Version}}'))" "$start"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    local why
    why=$("$DOCKER" version 2>&1 >/dev/null | grep -m1 -iE 'denied|cannot|error' | cut -c1-160 || true)
    if [ -S /var/run/docker.sock ] && pgrep -x dockerd >/dev/null; then
      fail "dockerd runs but this user cannot use it ($why): run as root or from the docker group"
    fi
    fail "dockerd is not running and starting it needs root ($why)"
  fi
  if pid_alive /var/run/docker.pid; then
    log "a dockerd (pid $(cat /var/run/docker.pid)) is starting; waiting for it"
  else
    command -v dockerd >/dev/null || fail "dockerd is not installed"
    rm -f /var/run/docker.pid
    log "starting dockerd (log: $STATE/dockerd.log)"
    setsid nohup dockerd >"$STATE/dockerd.log" 2>&1 </dev/null &
  fi
  for i in $(seq 1 120); do
    docker_up && break
    if [ "$i" -gt 4 ] && ! pgrep -x dockerd >/dev/null; then
      tail -n 15 "$STATE/dockerd.log" >&2 || true
      fail "dockerd exited during start-up: Docker cannot run on this machine (see $STATE/dockerd.log)"
    fi
    sleep 0.5
  done
  if ! docker_up; then
    tail -n 15 "$STATE/dockerd.log" >&2 || true
    fail "dockerd did not answer within 60 s (see $STATE/dockerd.log)"
  fi
  record dockerd "started ($("$DOCKER" version -f '{{.Server.Version}}'))" "$start"
}

# ---------------------------------------------------------------- 3. registry
step_registry() {
  local start i
  start=$(date +%s.%N)
  if registry_up; then
    record registry "already listening on $REGISTRY" "$start"
    return
  fi
  command -v docker-registry >/dev/null || fail "docker-registry is not installed"
  mkdir -p "$STATE" /var/lib/docker-registry
  # Loopback only, no auth, deletes allowed (the e2e suite and the benchmark clean up).
  cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  if pid_alive "$STATE/registry.pid"; then
    log "a registry (pid $(cat "$STATE/registry.pid")) is starting; waiting for it"
  else
    log "starting docker-registry on $REGISTRY (log: $STATE/registry.log)"
    setsid nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 </dev/null &
    echo $! >"$STATE/registry.pid"
  fi
  for i in $(seq 1 60); do
    registry_up && break
    if ! pid_alive "$STATE/registry.pid"; then
      tail -n 10 "$STATE/registry.log" >&2 || true
      fail "docker-registry exited during start-up (see $STATE/registry.log)"
    fi
    sleep 0.5
  done
  registry_up || fail "the registry did not answer on http://$REGISTRY/v2/ within 30 s"
  record registry "started on $REGISTRY" "$start"
}

# ---------------------------------------------------------------- 4. base image
mirror_url() {
  local url=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    url=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$url" ] && [ -f /etc/apt/sources.list ]; then
    url=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "${url:-http://deb.debian.org/debian}"
}

# Slims a debootstrap rootfs the way the official debian:*-slim images are made
# (debuerreotype): no docs, man pages or locales, and the same apt configuration
# (docker-clean, no recommends of suggests, gzip indexes, no translations).
slimify() {
  local root="$1"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# This is the "slim" variant of the Debian base image.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{groff,info,linda,locale,man}/* "$root"/usr/share/lintian/overrides/*
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  echo 'Acquire::GzipIndexes "true";' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  # The same sources as this machine (bookworm, -updates, -security from its mirror).
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
  fi
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/cache/debconf/*-old "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
  : >"$root/etc/machine-id"
  echo "$SUITE-slim" >"$root/etc/hostname"
}

step_base() {
  local start mirror work
  start=$(date +%s.%N)
  if [ "${DOCKER_ENV_REBUILD_BASE:-0}" != 1 ] && in_registry "$BASE_REPO" "$BASE_TAG"; then
    record base "already in the registry: $BASE_REF" "$start"
    return
  fi
  command -v debootstrap >/dev/null || fail "debootstrap is not installed"
  mirror=$(mirror_url)
  work=$(mktemp -d /var/tmp/docker-env-rootfs.XXXXXX)
  TMPDIRS+=("$work")
  log "debootstrap --variant=minbase $SUITE from $mirror (log: $STATE/debootstrap.log)"
  debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
    || { tail -n 15 "$STATE/debootstrap.log" >&2; fail "debootstrap of $SUITE from $mirror failed"; }
  slimify "$work/rootfs"
  tar --numeric-owner -C "$work/rootfs" -c . \
    | "$DOCKER" import --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_REF" >/dev/null || fail "docker import of the base image failed"
  "$DOCKER" push "$BASE_REF" >"$STATE/push-base.log" 2>&1 || fail "docker push $BASE_REF failed (see $STATE/push-base.log)"
  record base "made and pushed $BASE_REF ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_REF" | awk '{ printf "%.0f MB", $1 / 1e6 }'))" "$start"
}

# ---------------------------------------------------------------- 5. sidecar image
step_busybox() {
  local start work
  start=$(date +%s.%N)
  if [ "${DOCKER_ENV_REBUILD_BASE:-0}" != 1 ] && in_registry "$BUSYBOX_REPO" "$BUSYBOX_TAG"; then
    record busybox "already in the registry: $BUSYBOX_REF" "$start"
    return
  fi
  work=$(mktemp -d /var/tmp/docker-env-busybox.XXXXXX)
  TMPDIRS+=("$work")
  mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc" "$work/rootfs/www"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/rootfs/etc/group"
  echo 'sidecar' >"$work/rootfs/www/index.html"
  tar --numeric-owner -C "$work/rootfs" -c . \
    | "$DOCKER" import --change 'CMD ["sh"]' --change 'ENV PATH=/bin' - "$BUSYBOX_REF" >/dev/null \
    || fail "docker import of the busybox image failed"
  "$DOCKER" push "$BUSYBOX_REF" >"$STATE/push-busybox.log" 2>&1 || fail "docker push $BUSYBOX_REF failed (see $STATE/push-busybox.log)"
  record busybox "made and pushed $BUSYBOX_REF" "$start"
}

# ---------------------------------------------------------------- 6. Dockerfile frontend image
# The tools directory of the user who ran sudo (where `npm run tools` built), else ours.
tools_bin() {
  local home
  if [ -n "${ML_INFRA_TOOLS_BIN:-}" ]; then
    echo "$ML_INFRA_TOOLS_BIN"
    return
  fi
  home=$HOME
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then home=$(getent passwd "$SUDO_USER" | cut -d: -f6); fi
  echo "$home/.cache/ml-infra/tools/bin"
}

# upstream_release_changes DOCKERFILE: `docker import --change` lines for the LABEL and
# ENTRYPOINT instructions of the upstream Dockerfile's release stage (FROM scratch AS release).
upstream_release_changes() {
  awk '
    /^FROM / { in_release = ($0 ~ /^FROM scratch AS release$/) ; next }
    in_release && /^(LABEL|ENTRYPOINT) / { print }
  ' "$1"
}

step_frontend() {
  local start bin share version tag repo=docker/dockerfile work sum pushed_sum changes=() line
  start=$(date +%s.%N)
  bin="$(tools_bin)"
  share="$bin/../share/dockerfile-frontend"
  version=$(node -e 'const v = require(process.argv[1]).tools["dockerfile-frontend"]; console.log(v.version + "-" + v.channel)' \
    "$(cd "$(dirname "$0")/.." && pwd)/tools/versions.json") || fail "cannot read the frontend version from tools/versions.json"
  tag="$version"
  if [ ! -x "$bin/dockerfile-frontend" ] || [ ! -f "$share/Dockerfile" ]; then
    fail "$bin/dockerfile-frontend (or its upstream Dockerfile in $share) is missing: run \`npm run tools\` first"
  fi
  "$bin/dockerfile-frontend" -version | grep -q " $version " \
    || fail "$bin/dockerfile-frontend is not version $version (tools/versions.json): run \`npm run tools\`"
  sum=$(sha256sum "$bin/dockerfile-frontend" | cut -d' ' -f1)
  pushed_sum=$(cat "$STATE/frontend.sha256" 2>/dev/null || true)
  if [ "$sum" = "$pushed_sum" ] && in_registry "$repo" "$tag"; then
    record frontend "already in the registry: $REGISTRY/$repo:$tag" "$start"
    return
  fi
  while IFS= read -r line; do changes+=(--change "$line"); done < <(upstream_release_changes "$share/Dockerfile")
  printf '%s\n' "${changes[@]}" | grep -q '^ENTRYPOINT ' || fail "no ENTRYPOINT in the release stage of $share/Dockerfile"
  work=$(mktemp -d /var/tmp/docker-env-frontend.XXXXXX)
  TMPDIRS+=("$work")
  mkdir -p "$work/rootfs/bin"
  cp "$bin/dockerfile-frontend" "$work/rootfs/bin/dockerfile-frontend"
  tar --numeric-owner --owner=0 --group=0 -C "$work/rootfs" -c . \
    | "$DOCKER" import "${changes[@]}" - "$REGISTRY/$repo:$tag" >/dev/null \
    || fail "docker import of the frontend image failed"
  "$DOCKER" push "$REGISTRY/$repo:$tag" >"$STATE/push-frontend.log" 2>&1 \
    || fail "docker push $REGISTRY/$repo:$tag failed (see $STATE/push-frontend.log)"
  echo "$sum" >"$STATE/frontend.sha256"
  record frontend "made and pushed $REGISTRY/$repo:$tag" "$start"
}

# ---------------------------------------------------------------- 7. smoke test
# A container must start (catches missing cgroups, namespaces or overlayfs early).
step_smoke() {
  local start out
  start=$(date +%s.%N)
  "$DOCKER" image inspect "$BASE_REF" >/dev/null 2>&1 || "$DOCKER" pull -q "$BASE_REF" >/dev/null 2>"$STATE/smoke.log" \
    || fail "cannot pull $BASE_REF from the local registry (see $STATE/smoke.log)"
  out=$("$DOCKER" run --rm --network none "$BASE_REF" sh -c 'echo ok' 2>"$STATE/smoke.log") \
    || fail "a container cannot start here: $(tail -n 3 "$STATE/smoke.log")"
  [ "$out" = ok ] || fail "a container started but printed '$out' instead of 'ok'"
  record smoke "a container of $BASE_REF runs" "$start"
}

# ---------------------------------------------------------------- 8. local BuildKit runner
step_runner() {
  local start tsx
  start=$(date +%s.%N)
  if [ "${DOCKER_ENV_SKIP_RUNNER:-0}" = 1 ]; then
    record runner "skipped (DOCKER_ENV_SKIP_RUNNER=1)" "$start"
    return
  fi
  tsx="$(cd "$(dirname "$0")/.." && pwd)/node_modules/.bin/tsx"
  [ -x "$tsx" ] || fail "node_modules/.bin/tsx is missing: run npm ci first"
  "$tsx" "$(dirname "$0")/local-runner.ts" start || fail "the local BuildKit runner did not start (see above)"
  record runner "buildkitd and the builder of the local stack are ready" "$start"
}

mkdir -p "$STATE" 2>/dev/null || STATE=$(mktemp -d /tmp/ml-infra-docker.XXXXXX)
step_packages
step_dockerd
step_registry
step_base
step_busybox
step_frontend
step_smoke
step_runner
log "ready in $(elapsed "$T0"): dockerd $("$DOCKER" version -f '{{.Server.Version}}'), registry http://$REGISTRY, base $BASE_REF, sidecar $BUSYBOX_REF, Dockerfile frontend $REGISTRY/docker/dockerfile"
