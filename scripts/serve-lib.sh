# Shared by the client smoke scripts (sourced): free ports, a TLS server, and runs counted.

# A free loopback port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_tls_sluice CONFIG DATA_DIR PORT: `sluice serve --tls-self-signed` in the background,
# logging to DATA_DIR.log; sets tls_pid, and ca to the authority's path once it serves.
start_tls_sluice() {
  mkdir -p "$2"
  target/debug/sluice serve --tls-self-signed --config "$1" --bind "127.0.0.1:$3" --data-dir "$2" >"$2.log" 2>&1 &
  tls_pid=$!
  ca=""
  for _ in $(seq 100); do
    ca=$(sed -n 's/^TLS certificate authority: //p' "$2.log")
    [ -n "$ca" ] && (echo >"/dev/tcp/127.0.0.1/$3") 2>/dev/null && break
    sleep 0.1
  done
}

# run_counted NAME LOG COMMAND...: runs COMMAND, adds to passed or failed, and on failure
# shows the tail of the server log LOG.
run_counted() {
  local name=$1 log=$2
  shift 2
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "$name failed; server log:"
    tail -20 "$log"
  fi
}
