#!/usr/bin/env bash
# Issue 6's CPU experiment: the tiny learned terminal with a 1,024-token context on the same tasks
# collected twice, as recorded and opening with an observation of the state after setup
# (--config.observe_setup=True; pinned with the task when a session is truncated), trained
# 1,500 steps and evaluated on 64 test episodes; observed-copy is observed with three quarters of
# the training records synthetic copy examples (data.copy_fraction, twjax/data.py), and
# observed-copy-smeared is that with smeared keys (model.smeared_keys), started from a copy-only
# warm-up (320 steps of 32 x 128 tokens, 99% copy examples, ~7 min), where induction forms; in the
# 1,024-token mix from scratch it had not by step 400. observed-lines-smeared is that with half
# the copy examples listings whose lines share their prefix (data.copy_lines_fraction, from a
# 1,200-step warm-up with them), so that copying a listing's lines takes more than one-token
# induction. observed-select-smeared is that with half the listings followed by a selection from
# them (data.copy_select_fraction: a run of lines, as head and tail print, or the names of a run of
# lines, as plain ls prints), from the listing warm-up continued 600 steps with selections. About
# 2 x 6 min of collection, 6 x 35-65 min of training (by the VM's speed that day) and 6 x ~5 min
# of evaluation on 2 cores. Three warm-ups alone ask whether the names column can be learnt: from
# scratch, 1,500 steps of copy examples that are all a listing followed by its names column
# (data.copy_names_fraction=1), with the tiny preset (warmup-names, ~15 min), with a KV head per
# query head (warmup-names-mha) and with 8 layers (warmup-names-deep, ~30 min); a fourth,
# warmup-names-curriculum, starts on listings without prefixes; warmup-names-lines has line and
# column embeddings (model.line_embeddings, zero at init; its listings end lines in the
# tokenizer's newline), and warmup-names-continued goes on 900 steps from warmup-names' weights,
# with them (copy-warmup-names-lines-continued) and, the control, without (copy-warmup-names-continued).
# warmup-names-short-lines has names of one token (data.copy_name_max=1, as the probe's are), so
# that the next name's column is the last one's; warmup-names-short-continued goes on from
# warmup-names' weights 900 steps on such names, with line embeddings and (the control) without.
# warmup-names-session-continued goes on 900 steps from warmup-names' weights on listings shaped as
# in a session (data.copy_sessions: each part opened by <out>, the names column from the listing's
# first line, so that its line k is the listing's line k), with line embeddings and without;
# warmup-names-session-longer goes on 2,700 steps more from the one with them (~33 min), and
# warmup-names-session-headers 1,500 more from there with 0-3 header lines opening each listing
# (data.copy_session_header_max=3, as total, . and .. open ls -la's), which the names column skips;
# warmup-names-session-mixed 900 more from there on a mix (a quarter plain copies; of the listings,
# a third repeated whole, a third as a run of lines, a third as the names column), all in a
# session's shape: does the names column survive the whole-line copying it displaced?
# observed-session-lines is the 1,024-token terminal on the observed collection from that mixed
# warm-up, with line embeddings and three quarters of its records the same session-shaped mix.
# observed-listing-session-lines is that on the same tasks collected with the working directory's
# ls -la first in the observation (--config.observe_layout=listing_first), where a later plain ls
# aligns with it at three header lines, as in the headers warm-up.
# observed-recall is observed-session-lines with half its copy examples recall examples, from the
# recall warm-up (run warmup-recall first); observed-recall-heavy that with nine tenths of its records
# copy examples instead of three quarters, to keep the copy skills alive beside the transcripts.
# warmup-recall goes on 600 steps from warmup-names-session-mixed with half its copy examples recall
# examples (data.copy_recall_fraction: files shown as head -v shows them, then one asked for by its
# name, as cat after the observation).
# observed-select-session is observed-recall from a warm-up of the same mix (warmup-select-session,
# 900 steps) started from the selections warm-up, which still copies lines that share their prefix
# (the names-only chain had erased that); observed-listing-select-session is that on the
# listing_first collection, and observed-select-session-seed1 the first with another data order
# (data.seed, train.seed 1), to size the seed-to-seed spread.
# warmup-select-session-long goes on 600 steps from warmup-select-session with listings as long as
# real ls -la lines (prefixes of up to 28 pieces, names of up to 6: data.copy_prefix_max and
# copy_name_max; 8 x 512 tokens a step, so that they fit), and observed-select-session-long is
# observed-select-session from it, with such listings in its mix (observed-select-session-long-seed1:
# the same with data.seed and train.seed 1).
# observed-select-session-digits is observed-select-session with a tokenizer whose digit runs
# merge into pieces (tokenizer train --no-split-digits: "5710" is 57 10, not 5 7 1 0), its three
# warm-ups (listings, selections, the session-shaped mix: warmup-select-session-digits) retrained
# with it; the test outputs and their scores are the same text.
# observed-select-session-long-digits puts the two together: warmup-select-session-long-digits goes
# on 600 steps from warmup-select-session-digits with the long listings, as warmup-select-session-long
# does from warmup-select-session, and the terminal from it is observed-select-session-long with the
# digit tokenizer.
# observed-pointer and observed-select-session-pointer give the terminal a copy head (model.copy_head:
# a pointer over its context beside the vocabulary) and no warm-up: the first on the transcripts
# alone (with smeared keys), the second with observed-select-session's mix of copy examples
# (observed-select-session-pointer-seed1 and observed-pointer-seed1: the same with data.seed and
# train.seed 1).
# observed-select-session-scratch is their control: the same mix and smeared keys from random
# weights, with neither a copy head nor a warm-up.
# observed-pointer-n384 is observed-pointer on four times the transcripts (the ablation's 384 per
# family, seed 7, observed: data/observed/n384, ~12 min to collect), the same 1,500 steps, evaluated
# on observed-pointer's test episodes; 2 of those 64 share their task with a training episode here.
# observed-pointer-n384-long is observed-pointer-n384 trained twice as long (3,000 steps), as its
# validation loss was still falling at step 1,500; observed-pointer-n384-long-seed1 is that with
# data.seed and train.seed 1.
# observed-follow-n384 is observed-pointer-n384 with a pointer that follows its own copies
# (model.copy_follow): where its last copy was the token written, it may go on to the next position.
# observed-follow-prior-n384 is that with a prior that follows only a confident copy (the follow
# share's logit starts at 2 + log of the mass the last pointer put on matches, not at 0);
# observed-follow-prior-n384-seed1 is that with data.seed and train.seed 1.
# pointer-n384 is observed-pointer-n384 on the recorded transcripts (the ablation's 384 per family,
# seed 7, as tools/ablation_cpu.sh collects them), evaluated on recorded's test episodes: the
# learned terminal of experiments/agent_context_imagined.py, whose agents' sessions hold no observation;
# pointer-n384-seed1 is the same with data.seed and train.seed 1, to size the seed-to-seed spread.
# Name runs to train only those.
# Re-running skips what is done and resumes the rest.
#   bash tools/fidelity_cpu.sh [recorded] [observed] [observed-copy] [observed-copy-smeared]
#                              [observed-lines-smeared] [observed-select-smeared]
#                              [warmup-names] [warmup-names-mha] [warmup-names-deep]
#                              [warmup-names-curriculum] [warmup-names-lines] [warmup-names-continued]
#                              [warmup-names-short-lines] [warmup-names-short-continued]
#                              [warmup-names-session-continued] [warmup-names-session-longer]
#                              [warmup-names-session-headers] [warmup-names-session-mixed]
#                              [observed-session-lines] [observed-listing-session-lines] [warmup-recall]
#                              [observed-recall] [observed-recall-heavy] [warmup-select-session]
#                              [observed-select-session] [observed-listing-select-session]
#                              [observed-select-session-seed1] [warmup-select-session-long]
#                              [observed-select-session-long] [observed-select-session-long-seed1]
#                              [warmup-select-session-digits] [observed-select-session-digits]
#                              [warmup-select-session-long-digits] [observed-select-session-long-digits]
#                              [observed-pointer] [observed-select-session-pointer]
#                              [observed-select-session-pointer-seed1] [observed-select-session-scratch]
#                              [observed-pointer-seed1] [observed-pointer-n384]
#                              [observed-pointer-n384-long] [observed-follow-n384] [pointer-n384]
#                              [pointer-n384-seed1] [observed-follow-prior-n384]
#                              [observed-pointer-n384-long-seed1] [observed-follow-prior-n384-seed1]
set -euo pipefail
cd "$(dirname "$0")/.."
twjax=(.venv/bin/python -m twjax)
data=data/ablation  # the same collection and tokenizer as tools/ablation_cpu.sh

collect() {  # out extra-flags...
  local out=$1; shift
  if [ ! -e "$out/stats.json" ]; then
    "${twjax[@]}" collect --config configs/data/tiny.py --config.episodes.train=96 --config.seed=0 --out "$out" "$@"
  fi
}
RUNS="$*"
selected() { [ -z "$RUNS" ] || [[ " $RUNS " == *" $1 "* ]]; }

collect "$data/n96"
# The observed collection, which every run but these on the recorded one trains on, tests on or warms up from.
for run in ${RUNS:-all}; do
  case $run in
    recorded | pointer-n384 | pointer-n384-seed1) ;;
    *) collect data/observed/n96 --config.observe_setup=True; break ;;
  esac
done
if selected observed-pointer-n384 || selected observed-pointer-n384-long || selected observed-follow-n384 \
    || selected observed-follow-prior-n384 || selected observed-pointer-n384-long-seed1 \
    || selected observed-follow-prior-n384-seed1; then
  collect data/observed/n384 --config.observe_setup=True --config.episodes.train=384 --config.seed=7
fi
if selected pointer-n384 || selected pointer-n384-seed1; then
  collect "$data/n384" --config.episodes.train=384 --config.seed=7
fi
if selected observed-listing-session-lines || selected observed-listing-select-session; then
  collect data/observed-listing/n96 --config.observe_setup=True --config.observe_layout=listing_first
fi
if [ ! -e "$data/tokenizer.model" ]; then
  "${twjax[@]}" tokenizer train --episodes "$data/n96/train-*.jsonl" --out "$data/tokenizer.model" --vocab-size 2048
fi

warmup() {  # workdir steps stop-step extra-flags...: copy examples only, 32 x 128 tokens a step, smeared keys
  local workdir=$1 steps=$2 stop_at=$3; shift 3
  "${twjax[@]}" train --config configs/terminal.py:tiny --workdir "$workdir" \
    "--config.data.train=data/observed/n96/train-*.jsonl" "--config.data.valid=data/observed/n96/valid-*.jsonl" \
    "--config.data.tokenizer=$data/tokenizer.model" --config.data.copy_fraction=0.99 \
    --config.data.batch_size=32 --config.data.seq_len=128 --config.model.max_len=128 \
    --config.model.smeared_keys=True --config.train.steps="$steps" --config.train.stop_at="$stop_at" "$@"
}
if selected observed-copy-smeared; then
  warmup runs/fidelity/copy-warmup-smeared 1200 320
fi
listings="--config.data.copy_lines_fraction=0.5"
selections="$listings --config.data.copy_select_fraction=0.5"
select_session_chain() {
  selected warmup-select-session || selected observed-select-session || selected observed-listing-select-session ||
    selected observed-select-session-seed1 || long_listing_chain
}
long_listing_chain() {
  selected warmup-select-session-long || selected observed-select-session-long || selected observed-select-session-long-seed1
}
select_chain() { selected observed-select-smeared || select_session_chain; }
if selected observed-lines-smeared || select_chain; then
  warmup runs/fidelity/copy-warmup-lines 1200 1200 $listings --config.train.eval_every=50  # word-split: flags
fi
if select_chain; then
  warmup runs/fidelity/copy-warmup-select 600 600 $selections --config.train.eval_every=50 \
    --config.train.init_from=runs/fidelity/copy-warmup-lines
fi
# probe_report WORKDIR: a warm-up's copy probes (copy_probe.names_column_predicted) through twjax evaluate,
# on two sessions and one regime, which the probes do not use.
probe_report() {
  if [ ! -e "$1/eval/report.json" ]; then
    "${twjax[@]}" evaluate --workdir "$1" --episodes "data/observed/n96/test-*.jsonl" \
      --max-episodes 2 --regimes teacher_forced --n-boot 10 --json > "$1/eval.json"
  fi
}
names="--config.data.copy_lines_fraction=1 --config.data.copy_select_fraction=1 --config.data.copy_names_fraction=1"
for run in warmup-names: warmup-names-mha:--config.model.n_kv_heads=4 warmup-names-deep:--config.model.n_layers=8 \
           warmup-names-lines:--config.model.line_embeddings=32 \
           "warmup-names-short-lines:--config.model.line_embeddings=32 --config.data.copy_name_max=1"; do
  IFS=: read -r name extra <<< "$run"
  if selected "$name"; then
    warmup "runs/fidelity/copy-$name" 1500 1500 $names $extra --config.train.eval_every=50  # word-split: flags
    probe_report "runs/fidelity/copy-$name"
  fi
done
# A curriculum: names columns of listings without prefixes first (the next name follows the one
# just written, a copy of whole lines), then with prefixes, from there.
if selected warmup-names-curriculum; then
  warmup runs/fidelity/copy-warmup-names-noprefix 600 600 $names --config.data.copy_prefix_max=0 \
    --config.train.eval_every=50
  warmup runs/fidelity/copy-warmup-names-curriculum 900 900 $names --config.train.eval_every=50 \
    --config.train.init_from=runs/fidelity/copy-warmup-names-noprefix
  probe_report runs/fidelity/copy-warmup-names-curriculum
fi
short="--config.data.copy_name_max=1"
session="--config.data.copy_sessions=True"
for run in warmup-names-continued:lines-continued:--config.model.line_embeddings=32 \
           warmup-names-continued:continued: \
           "warmup-names-short-continued:short-lines-continued:$short --config.model.line_embeddings=32" \
           "warmup-names-short-continued:short-continued:$short" \
           "warmup-names-session-continued:session-lines-continued:$session --config.model.line_embeddings=32" \
           "warmup-names-session-continued:session-continued:$session"; do
  IFS=: read -r selector name extra <<< "$run"
  if selected "$selector"; then
    warmup "runs/fidelity/copy-warmup-names-$name" 900 900 $names $extra --config.train.eval_every=50 \
      --config.train.init_from=runs/fidelity/copy-warmup-names
    probe_report "runs/fidelity/copy-warmup-names-$name"
  fi
done
# The session-shaped chain, each run from the one before it, with line embeddings.
lined="$session --config.model.line_embeddings=32 --config.train.eval_every=100"
headers="--config.data.copy_session_header_max=3"
previous=session-lines-continued
for run in "session-longer:2700:$names" "session-headers:1500:$names $headers" \
           "session-mixed:900:$headers --config.data.copy_lines_fraction=0.75 --config.data.copy_select_fraction=0.67 --config.data.copy_names_fraction=0.5"; do
  IFS=: read -r name steps extra <<< "$run"
  if selected "warmup-names-$name"; then
    warmup "runs/fidelity/copy-warmup-names-$name" "$steps" "$steps" $lined $extra \
      "--config.train.init_from=runs/fidelity/copy-warmup-names-$previous"  # word-split: flags
    probe_report "runs/fidelity/copy-warmup-names-$name"
  fi
  previous=$name
done
# Recall examples (data.RecallExample: files shown as head -v shows them, one asked for by its name,
# as cat after the observation) beside the session-shaped mix, from the mixed warm-up.
recall="--config.data.copy_recall_fraction=0.5"
if selected warmup-recall; then
  warmup runs/fidelity/copy-warmup-recall 600 600 $lined $headers --config.data.copy_lines_fraction=0.75 \
    --config.data.copy_select_fraction=0.67 --config.data.copy_names_fraction=0.5 $recall \
    --config.train.init_from=runs/fidelity/copy-warmup-names-session-mixed
  probe_report runs/fidelity/copy-warmup-recall
fi
# The same session-shaped mix with recall examples, from the selections warm-up instead of the
# names-only chain, which had erased copying lines that share their prefix.
session_recall="$lined $headers --config.data.copy_lines_fraction=0.75 --config.data.copy_select_fraction=0.67"
session_recall+=" --config.data.copy_names_fraction=0.5 $recall"
if select_session_chain; then
  warmup runs/fidelity/copy-warmup-select-session 900 900 $session_recall \
    --config.train.init_from=runs/fidelity/copy-warmup-select  # word-split: flags
  probe_report runs/fidelity/copy-warmup-select-session
fi
digits_tokenizer=$data/tokenizer-digits.model
with_digits="--config.data.tokenizer=$digits_tokenizer"
long_digits_chain() { selected warmup-select-session-long-digits || selected observed-select-session-long-digits; }
if selected warmup-select-session-digits || selected observed-select-session-digits || long_digits_chain; then
  if [ ! -e "$digits_tokenizer" ]; then
    "${twjax[@]}" tokenizer train --episodes "$data/n96/train-*.jsonl" --out "$digits_tokenizer" --vocab-size 2048 \
      --no-split-digits
  fi
  warmup runs/fidelity/copy-warmup-lines-digits 1200 1200 $listings --config.train.eval_every=50 $with_digits
  warmup runs/fidelity/copy-warmup-select-digits 600 600 $selections --config.train.eval_every=50 $with_digits \
    --config.train.init_from=runs/fidelity/copy-warmup-lines-digits
  warmup runs/fidelity/copy-warmup-select-session-digits 900 900 $session_recall $with_digits \
    --config.train.init_from=runs/fidelity/copy-warmup-select-digits  # word-split: flags
  probe_report runs/fidelity/copy-warmup-select-session-digits
fi
long_listings="--config.data.copy_prefix_max=28 --config.data.copy_name_max=6"
if long_listing_chain; then
  warmup runs/fidelity/copy-warmup-select-session-long 600 600 $session_recall $long_listings \
    --config.data.batch_size=8 --config.data.seq_len=512 --config.model.max_len=512 \
    --config.train.init_from=runs/fidelity/copy-warmup-select-session  # word-split: flags
  probe_report runs/fidelity/copy-warmup-select-session-long
fi
if long_digits_chain; then
  warmup runs/fidelity/copy-warmup-select-session-long-digits 600 600 $session_recall $long_listings $with_digits \
    --config.data.batch_size=8 --config.data.seq_len=512 --config.model.max_len=512 \
    --config.train.init_from=runs/fidelity/copy-warmup-select-session-digits  # word-split: flags
  probe_report runs/fidelity/copy-warmup-select-session-long-digits
fi
smeared="--config.data.copy_fraction=0.75 --config.model.smeared_keys=True"
lines="$smeared $listings --config.train.init_from=runs/fidelity/copy-warmup-lines"
select="$smeared $selections --config.train.init_from=runs/fidelity/copy-warmup-select"
smeared+=" --config.train.init_from=runs/fidelity/copy-warmup-smeared"
session_mix="--config.model.smeared_keys=True $lined $headers --config.data.copy_lines_fraction=0.75"
session_mix+=" --config.data.copy_select_fraction=0.67 --config.data.copy_names_fraction=0.5"
recall_mix="$session_mix $recall --config.train.init_from=runs/fidelity/copy-warmup-recall"
select_session="--config.model.smeared_keys=True $session_recall"
select_session_long="$select_session $long_listings"
select_session_long+=" --config.train.init_from=runs/fidelity/copy-warmup-select-session-long"
pointer="--config.model.copy_head=True --config.model.smeared_keys=True"
select_session_pointer="$pointer $session_recall"
select_session_scratch="$select_session"  # before its warm-up is added below
select_session_long_digits="$select_session $long_listings $with_digits"
select_session_long_digits+=" --config.train.init_from=runs/fidelity/copy-warmup-select-session-long-digits"
select_session_digits="$select_session $with_digits"
select_session_digits+=" --config.train.init_from=runs/fidelity/copy-warmup-select-session-digits"
select_session+=" --config.train.init_from=runs/fidelity/copy-warmup-select-session"
session_mix+=" --config.train.init_from=runs/fidelity/copy-warmup-names-session-mixed"

for run in recorded:$data/n96: observed:data/observed/n96: \
           observed-copy:data/observed/n96:--config.data.copy_fraction=0.75 \
           "observed-copy-smeared:data/observed/n96:$smeared" "observed-lines-smeared:data/observed/n96:$lines" \
           "observed-select-smeared:data/observed/n96:$select" \
           "observed-session-lines:data/observed/n96:--config.data.copy_fraction=0.75 $session_mix" \
           "observed-listing-session-lines:data/observed-listing/n96:--config.data.copy_fraction=0.75 $session_mix" \
           "observed-recall:data/observed/n96:--config.data.copy_fraction=0.75 $recall_mix" \
           "observed-recall-heavy:data/observed/n96:--config.data.copy_fraction=0.9 $recall_mix" \
           "observed-select-session:data/observed/n96:--config.data.copy_fraction=0.75 $select_session" \
           "observed-listing-select-session:data/observed-listing/n96:--config.data.copy_fraction=0.75 $select_session" \
           "observed-select-session-seed1:data/observed/n96:--config.data.copy_fraction=0.75 $select_session --config.data.seed=1 --config.train.seed=1" \
           "observed-select-session-long:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_long" \
           "observed-select-session-long-seed1:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_long --config.data.seed=1 --config.train.seed=1" \
           "observed-select-session-digits:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_digits" \
           "observed-select-session-long-digits:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_long_digits" \
           "observed-pointer:data/observed/n96:$pointer" \
           "observed-pointer-seed1:data/observed/n96:$pointer --config.data.seed=1 --config.train.seed=1" \
           "observed-pointer-n384:data/observed/n384,data/observed/n96:$pointer" \
           "observed-pointer-n384-long:data/observed/n384,data/observed/n96:$pointer --config.train.steps=3000" \
           "observed-pointer-n384-long-seed1:data/observed/n384,data/observed/n96:$pointer --config.train.steps=3000 --config.data.seed=1 --config.train.seed=1" \
           "observed-follow-n384:data/observed/n384,data/observed/n96:$pointer --config.model.copy_follow=True" \
           "observed-follow-prior-n384:data/observed/n384,data/observed/n96:$pointer --config.model.copy_follow=True --config.model.copy_follow_init_confidence=1 --config.model.copy_follow_init_bias=2" \
           "observed-follow-prior-n384-seed1:data/observed/n384,data/observed/n96:$pointer --config.model.copy_follow=True --config.model.copy_follow_init_confidence=1 --config.model.copy_follow_init_bias=2 --config.data.seed=1 --config.train.seed=1" \
           "pointer-n384:$data/n384,$data/n96:$pointer" \
           "pointer-n384-seed1:$data/n384,$data/n96:$pointer --config.data.seed=1 --config.train.seed=1" \
           "observed-select-session-pointer:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_pointer" \
           "observed-select-session-pointer-seed1:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_pointer --config.data.seed=1 --config.train.seed=1" \
           "observed-select-session-scratch:data/observed/n96:--config.data.copy_fraction=0.75 $select_session_scratch"; do
  IFS=: read -r name episodes extra <<< "$run"
  IFS=, read -r episodes tests <<< "$episodes"  # train[,test]: the test episodes default to the train's collection's
  tests=${tests:-$episodes}
  selected "$name" || continue
  workdir=runs/fidelity/$name
  "${twjax[@]}" train --config configs/terminal.py:tiny --workdir "$workdir" \
    "--config.data.train=$episodes/train-*.jsonl" "--config.data.valid=$episodes/valid-*.jsonl" \
    "--config.data.tokenizer=$data/tokenizer.model" --config.train.steps=1500 \
    --config.data.seq_len=1024 --config.model.max_len=1024 --config.data.batch_size=4 $extra  # word-split: extra holds flags
  if [ ! -e "$workdir/eval/report.json" ]; then
    "${twjax[@]}" evaluate --workdir "$workdir" --episodes "$tests/test-*.jsonl" \
      --train-episodes "$episodes/train-*.jsonl" --max-episodes 64 --json > "$workdir/eval.json"
  fi
  echo "$name: $workdir/eval/report.json"
done
