"""Baselines scored on the same turns as the learned terminal, always with the real history.

- trivial: empty output, exit 0, cwd unchanged. Half of all turns print nothing, so this is the floor
  any learned terminal must clear on the non-empty turns.
- ngram: the most frequent (output, exit code, cwd change) seen in training for the same command in a
  similar context, backing off from specific to general keys:
      (command, previous command) -> command -> (first word, previous first word) -> first word -> trivial.
  The cwd is stored as "unchanged" when it equals the previous turn's cwd, so `ls` in another
  directory predicts "stays where it is" rather than a directory seen in training.
"""
import collections
from typing import Callable, Iterable, Protocol, Sequence

from twjax.episode import IMAGINED_LABELS, Episode
from twjax.evaluate.metrics import Prediction, TurnRecord, copyable_turns, make_record, turn_word

UNCHANGED = None  # cwd token: the cwd after the turn equals the cwd before it
DEFAULT_INITIAL_CWD = "/root"  # the harness's default working directory


class Baseline(Protocol):
    name: str

    def predict(self, episode: Episode, turn_index: int) -> Prediction:
        """Predicts turn `turn_index` from the real history episode.turns[:turn_index] and its command."""


def cwd_before(episode: Episode, turn_index: int, initial_cwd: str) -> str:
    return episode.turns[turn_index - 1].cwd if turn_index > 0 else initial_cwd


class TrivialBaseline:
    name = "trivial"

    def __init__(self, initial_cwd: str = DEFAULT_INITIAL_CWD):
        self.initial_cwd = initial_cwd

    def predict(self, episode: Episode, turn_index: int) -> Prediction:
        return Prediction(output="", exit_code=0, cwd=cwd_before(episode, turn_index, self.initial_cwd))


class NGramBaseline:
    name = "ngram"

    def __init__(self, initial_cwd: str = DEFAULT_INITIAL_CWD):
        self.tables: list[dict[tuple, collections.Counter]] = [collections.defaultdict(collections.Counter)
                                                               for _ in range(4)]
        self.initial_cwd = initial_cwd
        self.hits = collections.Counter()  # which back-off level answered, for the report

    @staticmethod
    def keys(episode: Episode, turn_index: int) -> list[tuple]:
        turn = episode.turns[turn_index]
        before = episode.turns[turn_index - 1] if turn_index > 0 else None
        previous = before.command if before else "<start>"
        word, previous_word = turn_word(turn), turn_word(before) if before else "<start>"
        return [(turn.command, previous), (turn.command,), (word, previous_word), (word,)]

    def fit(self, episodes: Iterable[Episode]) -> "NGramBaseline":
        first_cwds = collections.Counter()
        episodes = list(episodes)
        for episode in episodes:
            if episode.turns:
                first_cwds[episode.turns[0].cwd] += 1
        # Most episodes start where the harness opens, so the first turn's cwd is the usual start.
        if first_cwds:
            self.initial_cwd = first_cwds.most_common(1)[0][0]
        for episode in episodes:
            for index, turn in enumerate(episode.turns):
                before = cwd_before(episode, index, self.initial_cwd)
                value = (turn.output, turn.exit_code, UNCHANGED if turn.cwd == before else turn.cwd)
                for table, key in zip(self.tables, self.keys(episode, index)):
                    table[key][value] += 1
        return self

    def predict(self, episode: Episode, turn_index: int) -> Prediction:
        before = cwd_before(episode, turn_index, self.initial_cwd)
        for level, (table, key) in enumerate(zip(self.tables, self.keys(episode, turn_index))):
            counts = table.get(key)
            if counts:
                self.hits[level] += 1
                output, exit_code, cwd = counts.most_common(1)[0][0]
                return Prediction(output=output, exit_code=exit_code, cwd=before if cwd is UNCHANGED else cwd)
        self.hits["trivial"] += 1
        return Prediction(output="", exit_code=0, cwd=before)


def character_context(episode: Episode, turn_index: int) -> int:
    """Characters of real history before the turn: the context measure when no tokenizer is at hand."""
    return len(episode.task) + sum(len(t.command) + len(t.output) for t in episode.turns[:turn_index])


def baseline_records(baseline: Baseline, episodes: Sequence[Episode],
                     context_of: Callable[[Episode, int], int] = character_context) -> list[TurnRecord]:
    """Scores a baseline on every turn. Pass the learned terminal's context measure (tokens) as
    `context_of` to put both on the same context-length axis."""
    return [make_record(episode.id, index, turn, baseline.predict(episode, index),
                        context_tokens=context_of(episode, index), copyable=copyable)
            for episode in episodes
            for index, (turn, copyable) in enumerate(zip(episode.turns, copyable_turns(episode)))
            if index >= episode.n_given and turn.label not in IMAGINED_LABELS]
