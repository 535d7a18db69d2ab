#!/usr/bin/env bash
# Before `pulumi up -s build`: make every runner pool of the runners stack a
# buildx builder CI can use from outside the VPC. Per pool, from the runners
# stack's plain `runners` output (the client key alone comes from the secret
# `runnerCredentials` output, read with --show-secrets into a 0600 file):
#   raise the pool to one instance, install the client certificate, wait for a
#   healthy buildkitd behind its load balancer, open an SSM port-forwarding
#   tunnel to it on 127.0.0.1 and (re)create its builder `ml-<pool>` on the
#   tunnel with mutual TLS; then check the builder answers.
# Pools scale back to zero by themselves (idle alarm). Fails, naming the pool,
# when any builder cannot be made: the build would otherwise not run where its
# targets must. Needs the Pulumi CLI, the AWS CLI with session-manager-plugin,
# jq and docker buildx.
set -euo pipefail

stack="${1:?usage: prepare-builders.sh <runners stack, e.g. acme/ml-infra/runners>}"

fail() {
  echo "prepare-builders: $*" >&2
  exit 1
}

runners="$(pulumi stack output --stack "$stack" --json runners)" \
  || fail "cannot read output runners of stack $stack: deploy the runners stack first (pulumi up -s runners)"
case "$runners" in
  "" | null) fail "stack $stack exports no runner pools (output runners): give it a runners section and deploy it" ;;
  '"[secret]"') fail "output runners of stack $stack is secret; this program exports it in plain text (credentials are in runnerCredentials): redeploy the runners stack" ;;
esac

pools="$(jq -r 'keys[]' <<<"$runners")"
[ -n "$pools" ] || fail "stack $stack exports no runner pools"
command_of() { jq -er --arg pool "$1" --arg key "$2" '.[$pool][$key]' <<<"$runners"; }
commands_of() { jq -er --arg pool "$1" --arg key "$2" '.[$pool][$key][]' <<<"$runners"; }

# Ask for every pool's machine first, so they boot in parallel.
for pool in $pools; do
  echo "scaling up pool $pool"
  bash -c "$(command_of "$pool" scaleUpCommand)" || fail "pool $pool: cannot raise its Auto Scaling group"
done

for pool in $pools; do
  builder="$(command_of "$pool" builder)"
  echo "pool $pool: installing the client certificate"
  commands_of "$pool" certInstallCommands | bash -euo pipefail || fail "pool $pool: cannot install its client certificate"
  echo "pool $pool: waiting for a healthy buildkitd"
  bash -c "$(command_of "$pool" waitHealthyCommand)" || fail "pool $pool: no healthy buildkitd"
  echo "pool $pool: opening the SSM tunnel"
  commands_of "$pool" tunnelCommands | bash -euo pipefail || fail "pool $pool: the SSM tunnel did not open"
  echo "pool $pool: creating the buildx builder $builder"
  commands_of "$pool" buildxCreateCommands | bash -euo pipefail || fail "pool $pool: cannot create builder $builder"
  docker buildx inspect --bootstrap "$builder" | grep -q 'Status: *running' \
    || fail "pool $pool: builder $builder does not reach buildkitd through the tunnel"
  echo "pool $pool: builder $builder is running"
done
