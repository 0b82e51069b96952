"""Write a tiny llama-architecture GGUF model that llama.cpp can serve.

Nothing can be downloaded at test time, so the integration tests make their
own model: two layers of width 64, random weights from a fixed seed, a byte
vocabulary (SentencePiece-style ``<0xNN>`` tokens) with ChatML special tokens
and a ChatML chat template. Its answers are gibberish by design; the output
layer favours printable ASCII so that the gibberish is readable. The file is
about 400 kB and takes a few milliseconds to write.
"""
import sys

import numpy as np
import gguf

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def write_model(path, *, seed=0, n_embd=64, n_layer=2, n_head=4, n_ff=128, n_ctx=512, space_prefix=True):
    rng = np.random.default_rng(seed)
    tokens = SPECIAL + ["<0x%02X>" % b for b in range(256)]
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 4 + [gguf.TokenType.BYTE] * 256
    n_vocab = len(tokens)
    printable = np.array([len(SPECIAL) + b for b in range(0x20, 0x7F)])

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("bor-tiny-%d" % seed)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(4)  # <|im_end|>
    w.add_add_bos_token(False)
    if not space_prefix:
        # Without it, text after a special token is not given a leading "▁":
        # llama.cpp's grammars for response_format need that (see test_features.py).
        w.add_add_space_prefix(False)
    w.add_chat_template(CHATML)

    def rand(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # Every embedding has a large constant first component, and the layers are
    # weak, so the last hidden state always points the same way in dimension 0;
    # the output layer turns that into a bias towards printable ASCII.
    embd = rand(n_vocab, n_embd, scale=0.5)
    embd[:, 0] = 8.0
    out = rand(n_vocab, n_embd, scale=1.0)
    out[:, 0] = -4.0
    out[printable, 0] = 2.0
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", out)
    for i in range(n_layer):
        p = "blk.%d." % i
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", rand(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", rand(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


if __name__ == "__main__":
    write_model(sys.argv[1])
