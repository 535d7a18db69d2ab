#!/bin/sh
# Scrapes ${SERVER_URL%/}${SCRAPE_PATH} every SCRAPE_INTERVAL_SECONDS and keeps
# the last good answer in /srv/metrics/metrics; serves /srv/metrics on PORT
# (GET /metrics: that scrape, GET /status: counts and the last error). Logs one
# line per change of state, not per scrape.
set -u
: "${SERVER_URL:?SERVER_URL (the server by name, e.g. http://inference:8080/) is required}"
path="${SCRAPE_PATH:-/metrics}"
interval="${SCRAPE_INTERVAL_SECONDS:-5}"
port="${PORT:-9102}"
dir=/srv/metrics
url="${SERVER_URL%/}${path}"

case "$interval" in '' | *[!0-9]*) echo "SCRAPE_INTERVAL_SECONDS must be a whole number of seconds, not '$interval'" >&2; exit 64 ;; esac

write_status() {
  printf 'target %s\nscrapes_ok %s\nscrapes_failed %s\nlast_success_unixtime %s\nlast_error %s\n' \
    "$url" "$ok" "$failed" "$last_success" "$last_error" >"$dir/.status" && mv -f "$dir/.status" "$dir/status"
}

# As PID 1 the shell would ignore SIGTERM: stop at once (sleep runs in the background so the trap fires).
trap 'exit 0' TERM INT
ok=0 failed=0 last_success=0 last_error=none state=start
write_status
# httpd forks into the background and serves files only: the last scrape and the status.
httpd -p "$port" -h "$dir" || exit 1
echo "local-metrics: scraping $url every ${interval}s, serving the last scrape on :$port/metrics"
while :; do
  # busybox-static's own wget -T crashes (SIGSEGV in its static glibc): bound it with timeout instead.
  if err=$(timeout 5 wget -q -O "$dir/.scrape" "$url" 2>&1); then
    mv -f "$dir/.scrape" "$dir/metrics"
    ok=$((ok + 1)) last_success=$(date +%s) last_error=none
    [ "$state" = ok ] || echo "local-metrics: scraped $url"
    state=ok
  else
    failed=$((failed + 1)) last_error=$(echo "${err:-no answer within 5 s}" | tr '\n' ' ')
    [ "$state" = failed ] || echo "local-metrics: cannot scrape $url: $last_error" >&2
    state=failed
  fi
  write_status
  sleep "$interval" &
  wait $!
done
