"""The frame's prompts: a text file of templates, one per line, in the syntax SD users write for the
Dynamic Prompts extension (the `dynamicprompts` package does the parsing and sampling; we write no parser):

    # lines starting with # are comments
    a {watercolor|linocut|oil} painting of __animal__ at dusk
    a {misty|rainy|sunny} harbour, {morning|evening} light

`{a|b|c}` picks one, `__animal__` picks a line of wildcards/animal.txt (a folder `wildcards` beside the prompts
file, as the extension keeps them; subfolders give `__colors/warm__`, and .yaml/.json collections work too).
Lines without `{` or `__` need no package. Everything is drawn from the picture's seed (Python's
random.Random, the same on every platform): the same seed and file give the same prompt.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path

WILDCARDS_DIR = "wildcards"
_WILDCARD = re.compile(r"__([^_\s{}|][^\s{}|]*?)__")
_INSTALL = "pip install dynamicprompts (or pip install 'onnxstream[frame]')"


class Prompts:
    def __init__(self, path):
        self.path = Path(path)
        self.wildcards = self.path.parent / WILDCARDS_DIR

    def templates(self) -> list[str]:
        """The file's templates (read again for every picture: edits apply to the next one)."""
        if not self.path.is_file():
            raise ValueError(f"prompts file {self.path} does not exist")
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read prompts file {self.path}: {e}") from None
        templates = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not templates:
            raise ValueError(f"prompts file {self.path} has no prompts (one per line; # starts a comment)")
        return templates

    def choose(self, seed: int) -> tuple[str, str]:
        """-> (template, prompt) for a picture's seed."""
        templates = self.templates()
        template = random.Random(seed).choice(templates)
        return template, self.expand(template, seed)

    def expand(self, template: str, seed: int) -> str:
        if "{" not in template and "__" not in template:
            return template
        try:
            from dynamicprompts.generators import RandomPromptGenerator
            from dynamicprompts.wildcards import WildcardManager
        except ImportError:
            raise ValueError(f"the prompts in {self.path} use {{a|b}} choices or __wildcards__, which need the "
                             f"dynamicprompts package: {_INSTALL}") from None
        logging.getLogger("dynamicprompts").setLevel(logging.ERROR)  # we report unknown wildcards ourselves
        generator = RandomPromptGenerator(WildcardManager(self.wildcards), seed=seed)
        try:
            prompt = generator.generate(template, 1)[0]
        except Exception as e:  # pyparsing errors and the like: name the line
            raise ValueError(f"{self.path}: cannot expand {template!r}: {e}") from None
        left = _WILDCARD.search(prompt)
        if left:  # dynamicprompts keeps an unknown wildcard as text (and only logs a warning)
            raise ValueError(f"{self.path}: wildcard __{left.group(1)}__ has no values: make "
                             f"{self.wildcards / left.group(1)}.txt with one choice per line")
        return prompt.strip()

    def check(self, tries: int = 8) -> None:
        """Fail now, not hours later: every template expands (a few seeds each) and its wildcards exist."""
        for template in self.templates():
            for name in _WILDCARD.findall(template):
                if "*" not in name and not self._has_wildcard(name):
                    raise ValueError(f"{self.path}: wildcard __{name}__ has no values: make "
                                     f"{self.wildcards / name}.txt with one choice per line")
            for seed in range(tries):
                self.expand(template, seed)

    def _has_wildcard(self, name: str) -> bool:
        if (self.wildcards / f"{name}.txt").is_file():
            return True
        from dynamicprompts.wildcards import WildcardManager  # yaml/json collections
        return bool(WildcardManager(self.wildcards).get_values(name))
