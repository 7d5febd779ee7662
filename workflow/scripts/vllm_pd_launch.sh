#!/usr/bin/env bash
# A prefill and a decode vLLM instance joined by a KV connector, behind vLLM's toy P/D proxy on port $1
# (rule vllm_bench_pd). The first TP of the job's GPUs prefill, the next TP decode. Environment:
#   TP, SERVE (the `vllm serve ...` command, with PORT_ROLE where the instance's port goes),
#   KV_PREFILL / KV_DECODE (--kv-transfer-config JSON), KV_ENV_PREFILL / KV_ENV_DECODE (extra env),
#   VLLM_REPO (a vLLM source checkout: the proxy script is not in the wheel).
set -euo pipefail
P=$1
IFS=, read -ra G <<< "${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((2 * TP - 1)))}"
gpus() { local IFS=,; echo "${G[*]:$1:$TP}"; }
start() {  # start ROLE_PORT GPU_OFFSET KV_CONFIG EXTRA_ENV SIDE_CHANNEL_PORT
    local cmd=${SERVE//PORT_ROLE/$1}
    # shellcheck disable=SC2086  # cmd and the extra env are word lists on purpose
    env CUDA_VISIBLE_DEVICES="$(gpus "$2")" VLLM_NIXL_SIDE_CHANNEL_PORT="$5" $4 $cmd --kv-transfer-config "$3" &
}
start $((P + 1)) 0 "$KV_PREFILL" "$KV_ENV_PREFILL" $((P + 3))
start $((P + 2)) "$TP" "$KV_DECODE" "$KV_ENV_DECODE" $((P + 3 + TP))
for port in $((P + 1)) $((P + 2)); do
    until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 5; done
done
exec python "$VLLM_REPO/tests/v1/kv_connector/nixl_integration/toy_proxy_server.py" --port "$P" \
    --prefiller-hosts 127.0.0.1 --prefiller-ports $((P + 1)) --decoder-hosts 127.0.0.1 --decoder-ports $((P + 2))
