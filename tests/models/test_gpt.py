"""The GPT family and its text data: model maths, tokenizers, token-block shards, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.text_tokenizer import TextTokenizer, parse_tokenizer, train_tokenizer
from models import build_model, resolve_config
from models.gpt import KVCache
from models.weights import load_model, save_model
from pipelines import cli
from pipelines.evaluate.text_metrics import score_text
from serving.drawing import complete


def tiny_gpt(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("gpt", resolve_config("gpt", "tiny", {"block_size": 32, **overrides}, {"vocab_size": 257}))


def test_untrained_loss_is_uniform_over_the_vocabulary():
    model = tiny_gpt()
    tokens = torch.randint(0, 257, (4, 33))
    assert model.loss("transformer", {"tokens": tokens}).item() == pytest.approx(math.log(257), rel=0.02)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_attention_is_causal(positions):
    """Changing a later token never changes the logits at earlier positions."""
    model = tiny_gpt(positions=positions).eval()
    ids = torch.randint(0, 257, (1, 20))
    changed = ids.clone()
    changed[0, 15] = (changed[0, 15] + 1) % 257
    before, after = model.logits(ids), model.logits(changed)
    assert torch.allclose(before[0, :15], after[0, :15], atol=1e-5)
    assert not torch.allclose(before[0, 15:], after[0, 15:], atol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_cached_logits_equal_the_whole_context(positions):
    """Tokens fed to a KV cache one by one, or a few at a time after cached ones, get the logits
    the whole context computed at once gives them."""
    model = tiny_gpt(positions=positions).eval()
    ids = torch.randint(0, 257, (2, 20))
    whole = model.logits(ids)
    cache = KVCache(model.config)
    pieces = [model.logits(ids[:, :5], cache)]  # a prompt
    pieces += [model.logits(ids[:, position : position + 1], cache) for position in range(5, 12)]
    pieces.append(model.logits(ids[:, 12:20], cache))  # several new tokens after cached ones
    assert cache.length == 20
    assert torch.allclose(torch.cat(pieces, dim=1), whole, atol=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_with_the_cache_writes_what_it_writes_without(temperature):
    """Past the context (32 tokens here) the window slides and the cache is left; the text is the
    same token for token, greedy or sampled with the same generator."""
    model = tiny_gpt().eval()
    prompt = torch.randint(0, 257, (3, 7))
    texts = [
        model.generate(prompt, 40, temperature, top_k=50, generator=torch.Generator().manual_seed(1), use_cache=cached)
        for cached in (True, False)
    ]
    assert texts[0].shape == (3, 47)
    assert torch.equal(texts[0], texts[1])


def test_embedding_is_tied_padded_and_initialised_like_gpt2():
    model = tiny_gpt()
    net = model.transformer
    assert net.lm_head.weight.data_ptr() == net.wte.weight.data_ptr()
    assert net.wte.weight.shape[0] == 320  # 257 padded to a multiple of 64
    assert model.logits(torch.zeros(1, 3, dtype=torch.long)).shape[-1] == 257
    assert net.blocks[0].mlp.down.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.1)


def test_flops_per_token_matches_the_formula():
    model = tiny_gpt()
    c = model.config
    dense = sum(p.numel() for p in model.transformer.parameters()) - model.transformer.wpe.weight.numel()
    assert model.flops_per_token(32) == 6 * dense + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * 32


def test_a_few_steps_lower_the_loss_and_weights_round_trip(tmp_path):
    model = tiny_gpt()
    tokens = torch.randint(0, 20, (8, 33))  # a small alphabet: learnable in a few steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model.loss("transformer", {"tokens": tokens})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    restored = load_model(save_model(model, tmp_path / "m"))
    assert torch.allclose(restored.logits(tokens[:, :-1]), model.eval().logits(tokens[:, :-1]), atol=1e-6)


def test_score_text_and_long_prompts():
    model = tiny_gpt().eval()
    blocks = torch.randint(0, 257, (5, 33))
    scores = score_text(model, blocks, bytes_per_token=2.0, batch_size=2)
    assert scores["perplexity"] == pytest.approx(math.exp(scores["val_loss"]))
    assert scores["bits_per_byte"] == pytest.approx(scores["val_loss"] / math.log(2) / 2.0)
    with pytest.warns(UserWarning, match="longer than the context; keeping its last 31"):
        text = complete(model, TextTokenizer(), "x" * 100, 5, 0.8, 10, torch.Generator().manual_seed(0))
    assert text.startswith("x" * 31)


def test_byte_and_bpe_tokenizers_round_trip():
    text = "def héllo(x):\n    return x  # ünïcode\n"
    byte = TextTokenizer()
    assert byte.decode(byte.encode(text)) == text and byte.vocab_size == 257
    corpus = [f"def function_{i}(argument):\n    return argument + {i}\n" for i in range(200)]
    bpe = train_tokenizer(
        DataConfig.model_validate({"tokenizer": {"kind": "bpe", "vocab_size": 300}}).tokenizer, iter(corpus)
    )
    assert 257 < bpe.vocab_size <= 300
    assert len(bpe.encode(corpus[0])) < len(corpus[0].encode())  # merges learned
    restored = TextTokenizer.from_json(bpe.to_json())
    assert restored.decode(restored.encode(text)) == text
    with pytest.raises(DataError, match="tok.json: not a tokenizer file"):
        parse_tokenizer("{not json", "tok.json")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("data.tokenizer.kind=wordpiece", "data.tokenizer.kind"),
        ("data.seq_len=4096", "data.seq_len"),
        ("train.strategy=zero4", "train.strategy"),
        ("model.preset=gigantic", "model.preset"),
        ("train.offload_params=true train.strategy=zero2", "train.offload_params"),
    ],
)
def test_bad_gpt_config_exits_2_naming_the_field(override, field, capsys, tmp_path):
    sets = [part for setting in override.split() for part in ("--set", setting)]
    code = cli.main(["run", "gpt-code-tiny", "--storage", str(tmp_path), *sets])
    assert code == 2
    assert field in capsys.readouterr().err


def test_a_family_fed_the_wrong_kind_of_data_is_named(capsys, tmp_path):
    assert cli.main(["run", "quickstart", "--storage", str(tmp_path), "--set", "data.source.kind=python_stdlib"]) == 2
    assert "model.family: ddpm learns image, but data.source python_stdlib is text data" in capsys.readouterr().err


def test_deepspeed_settings_follow_the_train_section():
    from pipelines.config import TrainConfig
    from pipelines.train.engines import deepspeed_config

    settings = TrainConfig(strategy="zero3", grad_accum_steps=4, offload_optimizer=True, offload_params=True)
    ds = deepspeed_config(settings, 3, on_gpu=True)
    assert ds["gradient_accumulation_steps"] == 4 and ds["bf16"]["enabled"]
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_zero3_keeps_a_share_of_the_model_gathered_not_deepspeeds_gpu_sized_defaults():
    from pipelines.config import TrainConfig
    from pipelines.train.engines import deepspeed_config

    def zero(parameters: int, stage: int = 3) -> dict:
        return deepspeed_config(TrainConfig(), stage, on_gpu=False, parameters=parameters)["zero_optimization"]

    large_unet = zero(361_000_000)  # the DDPM `large` preset: whole on every rank under the defaults
    assert large_unet["stage3_max_live_parameters"] == large_unet["stage3_max_reuse_distance"] == 45_125_000
    assert large_unet["reduce_bucket_size"] == large_unet["stage3_prefetch_bucket_size"] == 22_562_500
    huge = zero(20 * 10**9)  # DeepSpeed's own defaults are the ceiling
    assert huge["stage3_max_live_parameters"] == 10**9 and huge["reduce_bucket_size"] == 5 * 10**8
    assert huge["stage3_prefetch_bucket_size"] == 5 * 10**7
    tiny = zero(400_000)
    assert tiny["stage3_max_live_parameters"] == tiny["reduce_bucket_size"] == 10**6
    assert "reduce_bucket_size" not in zero(361_000_000, stage=2)  # ZeRO-1/2 keep DeepSpeed's sizes
