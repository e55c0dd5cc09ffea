"""Requests no tool of a toolset serves, for the ``no_tool`` task kind: the right answer is no call at all.

Each request is an everyday question or favour (cooking, writing, general knowledge, advice, arithmetic) with
the words of the tools that could serve it. A toolset whose tool names, descriptions or domain hold any of those
words never gets that request: a recipe question is not asked of an agent with a recipe search, a general
knowledge question not of an agent with any search or browsing tool, and nothing of an agent with a tool that
answers anything (a chat model behind a tool).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

ANSWERS_ANYTHING = frozenset({"llm", "chat", "completion", "completions", "gpt", "openai", "claude", "gemini",
                              "deepseek", "prompt", "ask", "assistant", "agent", "perplexity", "answer", "question"})
"""A tool with one of these words can take any request: a toolset holding one gets no ``no_tool`` task."""

LOOKS_THINGS_UP = frozenset({"search", "web", "wiki", "wikipedia", "browse", "browser", "fetch", "google", "bing",
                             "duckduckgo", "crawl", "scrape", "internet", "research", "tavily", "exa", "knowledge",
                             "encyclopedia", "page", "url", "news", "lookup", "navigate"})
"""Words of tools that look anything up: they could serve a general-knowledge question."""


@dataclass(frozen=True)
class OffDomainRequest:
    topic: str
    text: str
    served_by: frozenset[str]  # words of tools that could serve it
    knowledge: bool = False  # a fact a search tool could look up
    answer: tuple[str, ...] = ()  # words a right answer holds where the request's own words need not recur

    def answer_words(self) -> list[str]:
        """Words an answer to the request holds: ``answer``, else the request's content words."""
        own = [w for w in re.findall(r"[A-Za-z]{4,}", self.text) if w.casefold() not in _STOP]
        return list(dict.fromkeys([*self.answer, *own]))


_STOP = frozenset({"what", "which", "when", "where", "would", "could", "should", "there", "their", "they", "them",
                   "this", "that", "with", "from", "have", "your", "about", "into", "does", "want", "some", "give",
                   "tell", "help", "make", "need", "good", "best", "like", "just", "more", "than", "then", "over",
                   "very", "much", "many", "also", "will", "were", "been", "being", "only", "after", "before",
                   "know", "think", "really", "suggest", "simple", "long", "still", "little", "using", "three",
                   "four", "ideas", "keep", "while", "away", "work", "start", "first", "less", "each", "under",
                   "takes", "write", "word", "words", "name", "doesn", "explain", "during", "between", "difference",
                   "instead", "sounds", "short", "plans", "describe", "nicer", "leaves", "small", "number",
                   "through", "tips"})


def _r(topic: str, text: str, served_by: str, knowledge: bool = False, answer: str = "") -> OffDomainRequest:
    return OffDomainRequest(topic, text, frozenset(served_by.split()), knowledge, tuple(answer.split()))


_COOK = "recipe recipes cook cooking food meal meals kitchen ingredient ingredients nutrition diet restaurant menu"
_WRITE = "write writing draft compose poem poetry story text copywriting rewrite rephrase content generate"
_MATH = "calculate calculator math compute eval evaluate expression python code run execute number numbers formula"
_LANG = "translate translation language dictionary define definition grammar spell spelling word words thesaurus"
_HEALTH = "health medical doctor symptom symptoms sleep fitness exercise workout wellness"

REQUESTS: tuple[OffDomainRequest, ...] = (
    _r("cooking", "What's a simple vegetable soup I can make with carrots, leeks and potatoes?", _COOK + " soup"),
    _r("cooking", "How long should I boil an egg if I want the yolk still a little runny?", _COOK + " egg"),
    _r("cooking", "Can you suggest a quick breakfast that doesn't need an oven?", _COOK + " breakfast"),
    _r("cooking", "Give me three ideas for using up leftover rice.", _COOK + " rice"),
    _r("cooking", "What can I use instead of eggs when baking muffins?", _COOK + " baking bake"),
    _r("writing", "Write a four-line poem about autumn rain for my sister's birthday card.", _WRITE + " card"),
    _r("writing", "Help me word a polite note to my neighbour about their dog barking at night.", _WRITE + " note"),
    _r("writing", "Suggest a name for a small bakery that sells sourdough bread.", _WRITE + " name names brand"),
    _r("writing", "Can you rephrase 'we regret to inform you' so it sounds warmer?", _WRITE),
    _r("writing", "Give me a short toast I can say at my friend's wedding.", _WRITE + " wedding speech"),
    _r("writing", "I need a catchy title for a talk about learning to ride a bike at forty.", _WRITE + " title"),
    _r("knowledge", "Why is the sky blue during the day but red at sunset?", "sky weather science", True,
       "light scattering"),
    _r("knowledge", "Explain in simple words what photosynthesis does for a plant.", "plant plants biology science",
       True),
    _r("knowledge", "What's the difference between a virus and a bacterium?", _HEALTH + " biology science", True),
    _r("knowledge", "Who painted the ceiling of the Sistine Chapel?", "art painting museum history", True,
       "Michelangelo Buonarroti"),
    _r("knowledge", "How do tides work?", "tide tides ocean sea marine science", True, "moon gravity"),
    _r("knowledge", "What does a leap year fix in the calendar?", "calendar date dates time year", True),
    _r("knowledge", "Why do cats purr?", "cat cats pet pets animal animals vet", True),
    _r("knowledge", "How did the Romans heat their bath houses?", "history museum", True),
    _r("advice", "I keep waking up at 4 am. Any tips for sleeping through the night?", _HEALTH),
    _r("advice", "How can I keep my houseplants alive while I'm away for two weeks?",
       "plant plants garden gardening water watering home"),
    _r("advice", "What are some good stretches after a long day at a desk?", _HEALTH + " stretch desk"),
    _r("advice", "How do I get a red wine stain out of a cotton shirt?", "laundry clean cleaning stain wine"),
    _r("advice", "What should I pack for a weekend camping trip in spring?",
       "camping travel trip trips packing gear outdoor weather"),
    _r("advice", "How should I prepare for my first job interview?", "job jobs interview career resume hiring"),
    _r("advice", "What's a good way to start learning the guitar as an adult?",
       "music guitar lesson lessons course courses learn learning education tutor"),
    _r("advice", "How can I make my mornings less rushed before work?", "routine habit habits schedule calendar"),
    _r("math", "If a train leaves at 9:40 and the trip takes 2 hours 35 minutes, when does it arrive?",
       _MATH + " time train trains travel schedule timetable duration"),
    _r("math", "What is 15 percent of 240?", _MATH + " percent percentage", answer="36"),
    _r("math", "Is 221 a prime number?", _MATH + " prime", answer="13 17 composite"),
    _r("math", "How many minutes are there in a week?", _MATH + " time minutes week convert conversion",
       answer="10080 10,080"),
    _r("math", "If I split a 96 euro bill between three friends and me, how much does each pay?",
       _MATH + " bill split payment payments expense expenses money currency"),
    _r("language", "What's the plural of 'cactus'?", _LANG, answer="cacti cactuses"),
    _r("language", "How do you say 'thank you very much' in Italian?", _LANG + " italian", answer="grazie"),
    _r("language", "Should it be 'affect' or 'effect' in 'the rain will ___ our plans'?", _LANG),
    _r("language", "What's a nicer word for 'busy' when I describe my week?", _LANG),
    _r("fun", "Tell me a riddle my kids could solve.", "joke jokes riddle riddles game games fun kids puzzle"),
    _r("fun", "Give me a fun fact about octopuses.", "animal animals fact facts trivia ocean marine", True),
    _r("fun", "Suggest a board game for four adults that takes under an hour.",
       "game games board toy toys store shop product products catalog"),
    _r("fun", "Think up a name for a grey kitten with white paws.", "cat cats pet pets animal name names"),
)


def toolset_words(tools: list[dict[str, Any]], domain: str = "") -> set[str]:
    """Lower-case words (and their singulars) of the tools' names and descriptions and of the agent's domain."""
    text = [domain]
    for tool in tools:
        fn = tool.get("function", tool)
        if isinstance(fn, dict):
            text += [str(fn.get("name", "")), str(fn.get("description", ""))]
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", " ".join(text))
    words = {w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w}
    return words | {w[:-1] for w in words if len(w) > 3 and w.endswith("s")}


def requests_for(tools: list[dict[str, Any]], domain: str = "") -> list[OffDomainRequest]:
    """The requests none of ``tools`` serves; none when a tool can take any request."""
    words = toolset_words(tools, domain)
    if words & ANSWERS_ANYTHING:
        return []
    return [r for r in REQUESTS if not (r.served_by & words) and not (r.knowledge and words & LOOKS_THINGS_UP)]


def pick_request(tools: list[dict[str, Any]], domain: str, rng: random.Random) -> OffDomainRequest | None:
    options = requests_for(tools, domain)
    return rng.choice(options) if options else None
