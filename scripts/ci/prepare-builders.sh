#!/usr/bin/env bash
# Before `pulumi up -s build`: raise every runner pool to one instance, install
# its client certificate, wait for a healthy buildkitd behind its load balancer
# and (re)create its buildx builder, all from the build stack's `runners`
# output. Pools scale back to zero by themselves (idle alarm). Needs the Pulumi
# CLI, the AWS CLI, jq and docker buildx.
set -euo pipefail

stack="${1:?usage: prepare-builders.sh <build stack>}"

if ! runners="$(pulumi stack output --stack "$stack" --json runners 2>/dev/null)" || [ "$runners" = "null" ] || [ -z "$runners" ]; then
  echo "stack $stack exports no runner pools yet (first deployment: create them first, see the README); building with the default builder"
  exit 0
fi

pools="$(jq -r 'keys[]' <<<"$runners")"
command_of() { jq -r --arg pool "$1" --arg key "$2" '.[$pool][$key]' <<<"$runners"; }
commands_of() { jq -r --arg pool "$1" --arg key "$2" '.[$pool][$key][]' <<<"$runners"; }

# Ask for every pool's machine first, so they boot in parallel.
for pool in $pools; do
  echo "scaling up pool $pool"
  bash -c "$(command_of "$pool" scaleUpCommand)"
done

for pool in $pools; do
  echo "installing the client certificate of pool $pool"
  commands_of "$pool" certInstallCommands | bash -euo pipefail
  echo "waiting for a healthy buildkitd in pool $pool"
  bash -c "$(command_of "$pool" waitHealthyCommand)"
  echo "creating the buildx builder of pool $pool"
  commands_of "$pool" buildxCreateCommands | bash -euo pipefail
  docker buildx inspect --bootstrap "$(command_of "$pool" builder)"
done
