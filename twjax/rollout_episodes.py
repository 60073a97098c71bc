"""Between rollouts and the rest of twjax: task prompts in, Episode records out.

A rollout's token buffer follows the tokenizer's layout, so it decodes into the same Episode
JSONL as real transcripts: every rollout can be inspected, replayed for real, and scored.
"""
import numpy as np

from twjax import tokenizer as tokenizer_lib
from twjax.episode import Episode, Turn
from twjax.rollout import CONTEXT_FULL, ENDED_BY_AGENT, RUNNING, SANDBOX_LOST, TURN_LIMIT, LoopState, TerminalPrompts
from twjax.tasks.base import Task

STOP_NAMES = {RUNNING: "running", ENDED_BY_AGENT: "ended_by_agent", TURN_LIMIT: "turn_limit",
              CONTEXT_FULL: "context_full", SANDBOX_LOST: "sandbox_lost"}


def build_prompts(tok: tokenizer_lib.Tokenizer, task_texts: list[str], max_prompt_len: int,
                  given: list[list[Turn]] | None = None):
    """Right-padded `<task> TEXT` prompts; a task longer than max_prompt_len keeps its head. With
    `given` (each task's opening turns labelled "setup": the observation of its state,
    tasks.episodes.observe_tasks), a prompt is [task, given turns] as the tokenizer pins them at the
    head of a session of 2 * max_prompt_len tokens: the task cut to a quarter of that, the given
    turns to their head lines, max_prompt_len tokens in all."""
    if given is None:
        encoded = [tok.encode_task(text)[:max_prompt_len] for text in task_texts]
    else:
        encoded = [tok.pinned_prefix(Episode(id="", task=text, turns=list(turns)), 2 * max_prompt_len)
                   for text, turns in zip(task_texts, given, strict=True)]
    prompt_len = max(len(ids) for ids in encoded)
    prompts_BxP = np.zeros((len(encoded), prompt_len), np.int32)
    for row, ids in enumerate(encoded):
        prompts_BxP[row, :len(ids)] = ids
    return prompts_BxP, np.array([len(ids) for ids in encoded], np.int32)


def task_prompts(tok: tokenizer_lib.Tokenizer, tasks: list[Task], cache_len: int,
                 observations: dict[str, Turn] | None = None, max_prompt_len: int = 128):
    """(prompts_BxP, lengths_B, given) for sessions of `tasks` in a context of cache_len tokens:
    `<task>` prompts cut to max_prompt_len and given None, or with `observations` (by task id,
    tasks.episodes.observe_tasks) each session opened by its task's observation (given), pinned in
    half the context at most, as training pins it: for models trained on observed transcripts
    (collect --config.observe_setup=True)."""
    texts = [task.instruction for task in tasks]
    if observations is None:
        return (*build_prompts(tok, texts, max_prompt_len), None)
    given = [[observations[task.id]] for task in tasks]
    return (*build_prompts(tok, texts, cache_len // 2, given), given)


def session_prompts(tok: tokenizer_lib.Tokenizer, tasks: list[Task], cache_len: int,
                    observations: dict[str, Turn] | None = None, max_prompt_len: int = 128,
                    terminal_only: bool = False):
    """(prompts_BxP, lengths_B, given, terminal_prompts): task_prompts' prompts for both models
    (terminal_prompts None); or with terminal_only, the `observations` open the terminal's prompts
    alone (rollout.TerminalPrompts) and the agent's hold the task, given None: its sessions, as
    decoded, hold no observation."""
    if not terminal_only or observations is None:
        return (*task_prompts(tok, tasks, cache_len, observations, max_prompt_len), None)
    prompts_BxP, lengths_B, _ = task_prompts(tok, tasks, cache_len, None, max_prompt_len)
    prompts_BxQ, terminal_lengths_B, _ = task_prompts(tok, tasks, cache_len, observations, max_prompt_len)
    return prompts_BxP, lengths_B, None, TerminalPrompts(prompts_BxQ, terminal_lengths_B)


def split_turns(tok: tokenizer_lib.Tokenizer, ids: list[int]) -> list[tuple[list[int], list[int] | None]]:
    """(command ids, terminal span ids or None) for each <cmd> in a row's tokens, in order."""
    turns, at = [], 0
    while tok.cmd_id in ids[at:]:
        start = ids.index(tok.cmd_id, at) + 1
        end = ids.index(tok.end_cmd_id, start) if tok.end_cmd_id in ids[start:] else len(ids)
        command = ids[start:end]
        terminal = None
        if end + 1 < len(ids) and ids[end + 1] == tok.out_id:
            span_end = ids.index(tok.end_out_id, end + 2) + 1 if tok.end_out_id in ids[end + 2:] else len(ids)
            terminal = ids[end + 2:span_end]
            at = span_end
        else:
            at = end + 1
        turns.append((command, terminal))
    return turns


def row_to_episode(tok: tokenizer_lib.Tokenizer, ids: list[int], episode_id: str, task: str,
                   extra: dict) -> Episode:
    """One row of a rollout as an Episode; a turn whose terminal span is missing or cut off is
    kept with exit_code -1 and `complete: false`, never dropped."""
    turns = []
    for command_ids, terminal_ids in split_turns(tok, ids):
        output, exit_code, cwd = tok.parse_terminal_span(terminal_ids or [])
        complete = terminal_ids is not None and exit_code is not None and cwd is not None
        turns.append(Turn(command=tok.decode(command_ids), output=output,
                          exit_code=exit_code if exit_code is not None else -1, cwd=cwd or "",
                          extra={} if complete else {"complete": False}))
    return Episode(id=episode_id, task=task, turns=turns, extra=dict(extra))


def state_to_episodes(tok: tokenizer_lib.Tokenizer, state: LoopState, ids: list[str], tasks: list[str],
                      extra: dict | None = None, given: list[list[Turn]] | None = None) -> list[Episode]:
    """The rows as Episodes. The `given` turns of the prompts (build_prompts) open each episode as
    recorded, whole, in place of their pinned (perhaps cut) copies in the tokens."""
    tokens_BxS = np.asarray(state.tokens_BxS)
    length_B, stop_B, turns_B = (np.asarray(x) for x in (state.length_B, state.stop_B, state.turns_B))
    episodes = []
    for row, (episode_id, task) in enumerate(zip(ids, tasks)):
        row_ids = tokens_BxS[row, :length_B[row]].tolist()
        episode = row_to_episode(tok, row_ids, episode_id, task, {
            **(extra or {}), "stop": STOP_NAMES[int(stop_B[row])], "tokens": int(length_B[row]),
            "turns_completed": int(turns_B[row])})
        if given is not None:
            pinned = 0  # a given turn the pin had no room for is not among the row's turns
            while pinned < min(len(given[row]), len(episode.turns)) and \
                    episode.turns[pinned].command == given[row][pinned].command:
                pinned += 1
            episode.turns = list(given[row]) + episode.turns[pinned:]
        episodes.append(episode)
    return episodes
