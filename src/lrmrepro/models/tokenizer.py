"""Byte-level BPE tokenizer for the embedded default model, trained with HF ``tokenizers``.

Digits are split into single tokens (as in Qwen/Llama-3 tokenizers) so that arithmetic is learnable by a tiny
model. Special tokens follow the Qwen2 chat format; the chat template opens a ``<think>`` block in the generation
prompt, like the DeepSeek-R1 distills' templates.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS_CHAT, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SPECIAL_TOKENS = [PAD, BOS_CHAT, EOS]
# <think>/</think> are added tokens but not "special": decoding with skip_special_tokens keeps them in the text,
# as with the DeepSeek-R1 distills, so scorers can tell reasoning from the final answer.
THINK_TOKENS = [THINK_OPEN, THINK_CLOSE]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n<think>\\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, whole_tokens: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """BPE over ``texts``; ``whole_tokens`` (e.g. ``"10am"``, ``"(A)"``) are added as single tokens, matched before
    pre-tokenization (longest match first)."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=None,
        additional_special_tokens=[BOS_CHAT],
    )
    fast.add_tokens(THINK_TOKENS)
    if whole_tokens:
        fast.add_tokens(list(whole_tokens))
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast
