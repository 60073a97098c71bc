"""Tiny collection: the quickstart and the tests. A few hundred episodes in a couple of minutes.

`twjax collect --config configs/data/tiny.py --out data/tiny`
"""
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.families = ()  # () = every registered family not held out
    c.held_out_families = ("text_grep",)  # only in test: a whole family the model never trains on
    c.episodes = ml_collections.ConfigDict(dict(train=16, valid=4, test=4))  # per family per split
    c.kinds = ml_collections.ConfigDict(dict(expert=0.5, injected=0.3, exploration=0.2))
    c.difficulty = (1, 3)
    c.heldout_task_fraction = 0.25  # share of a family's tasks using a held-out file name or content word
    c.exploration_steps = 6
    c.max_candidates_factor = 40  # candidate tasks drawn per wanted task before a shortfall is reported
    # Tasks from `twjax tasks import` (Harbor / Terminal-Bench): benchmarks, so test-only by default.
    c.imported = ml_collections.ConfigDict(dict(files=(), split="test", kinds=("expert",)))
    # Open every transcript with an observation of the state after setup (a "setup" turn): what the
    # learned terminal is given instead of guessing what files hold (README, "Fidelity").
    c.observe_setup = False
    # contents_first (file heads, then the recursive listing) or listing_first (the directory's own
    # ls -la first, aligned with a later ls: twjax/tasks/episodes.py).
    c.observe_layout = "contents_first"
    c.seed = 0
    c.backend = "bwrap"  # starts a sandbox in ~50 ms (docker: ~1 s); --config.backend=docker or auto to change
    c.workers = 2
    c.shard_size = 1000  # episodes per shard file
    return c
