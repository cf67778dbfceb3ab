"""PyTorch's scaled_dot_product_attention on the shapes of attention_bench.cpp (decode) or, with --prefill,
of prefill_bench.cpp (causal whole prompts; TFLOP/s counted the same way), for comparison on the GPU machine
(PyTorch is there; it is not a dependency of pagedlm). K/V are contiguous here, not paged.
Usage: python3 bench/kernels/sdpa_bench.py [--quick] [--prefill]"""
import sys

import torch
import torch.nn.functional as F

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def time_ms(fn, reps=20):
    for _ in range(3):
        fn()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / reps


def copy_gbs():
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    return 2 * a.numel() / (time_ms(lambda: b.copy_(a), 10) * 1e-3) / 1e9


def prefill(quick):
    """Causal f16 attention of whole prompts: (name, heads, kv heads, head size, batch, tokens)."""
    cases = [("32/8 x 128", 32, 8, 128, 1, 512), ("32/8 x 128", 32, 8, 128, 1, 2048), ("32/8 x 128", 32, 8, 128, 4, 2048),
             ("32/8 x 128", 32, 8, 128, 1, 8192), ("32/8 x 64", 32, 8, 64, 4, 2048)]
    if not quick:
        cases += [("32/8 x 128", 32, 8, 128, 16, 1024), ("32/8 x 128", 32, 8, 128, 1, 16384)]
    print(f"# torch {torch.__version__} scaled_dot_product_attention (causal prefill), {torch.cuda.get_device_name()}\n")
    print("| heads x size | batch | new | us | TFLOP/s |\n|---|---|---|---|---|")
    for name, heads, kv_heads, head_dim, batch, tokens in cases:
        q = torch.randn(batch, heads, tokens, head_dim, dtype=torch.float16, device="cuda")
        k = torch.randn(batch, kv_heads, tokens, head_dim, dtype=torch.float16, device="cuda")
        v = torch.randn_like(k)
        ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
        flops = 4 * heads * head_dim * batch * tokens * (tokens + 1) / 2
        print(f"| {name} | {batch} | {tokens} | {ms * 1e3:.1f} | {flops / (ms * 1e-3) / 1e12:.1f} |")
        del q, k, v
    return 0


def main():
    quick = "--quick" in sys.argv
    if "--prefill" in sys.argv:
        return prefill(quick)
    batches = [1, 16] if quick else [1, 4, 16, 64]
    contexts = [1024, 8192] if quick else [1024, 2048, 4096, 8192, 16384, 32768]
    copy = copy_gbs()
    print(f"# torch {torch.__version__} scaled_dot_product_attention, {torch.cuda.get_device_name()}")
    print(f"device-to-device copy: {copy:.0f} GB/s (read + write)\n")
    print("| KV | batch | context | us | GB/s | % of copy |\n|---|---|---|---|---|---|")
    for batch in batches:
        for context in contexts:
            q = torch.randn(batch, HEADS, 1, HEAD_DIM, dtype=torch.float16, device="cuda")
            k = torch.randn(batch, KV_HEADS, context, HEAD_DIM, dtype=torch.float16, device="cuda")
            v = torch.randn_like(k)
            ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            gbs = 2 * k.numel() * 2 / (ms * 1e-3) / 1e9
            print(f"| f16 | {batch} | {context} | {ms * 1e3:.1f} | {gbs:.0f} | {100 * gbs / copy:.0f}% |")
            del q, k, v
    return 0


if __name__ == "__main__":
    sys.exit(main())
