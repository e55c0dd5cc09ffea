"""Near-duplicate agents use the same MinHash recipe as tools: a prompt that differs by punctuation is dropped."""

from synth.agents.diversity import minhash, near_duplicates
from synth.tools.dedup import minhash_of, word_shingles

PROMPT = "You are a helpful travel agent who books flights and hotels for users in Europe"


def test_near_duplicate_prompts_are_dropped_distinct_kept() -> None:
    texts = {"a": PROMPT, "b": PROMPT + "!", "c": "Completely different prompt about cooking pasta at home tonight"}
    assert near_duplicates(texts) == ["b"]


def test_agents_and_tools_share_one_minhash() -> None:
    assert minhash(PROMPT).jaccard(minhash_of(word_shingles(PROMPT))) == 1.0
