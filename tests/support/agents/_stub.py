"""What every stub agent shares: which scenario this call plays, and the work a
successful call leaves in the tree.

A test sets `<AGENT>_STUB_PLAN` to scenarios separated by commas (one per call,
the last repeated) and `STUB_STATE` to a directory outside the tree, where each
call is counted and logged as `<agent> <scenario> <prompt>`.

The scenarios reproduce what the real agents print (stdout or stderr, colour,
JSON) and how they exit; each agent's file cites where its messages come from.
"""

import os
import sys


def scenario(agent):
    plan = os.environ.get(f"{agent.upper()}_STUB_PLAN", "ok").split(",")
    state = os.environ.get("STUB_STATE", ".")
    counter = os.path.join(state, f"{agent}.count")
    try:
        with open(counter) as f:
            n = int(f.read() or "0")
    except FileNotFoundError:
        n = 0
    with open(counter, "w") as f:
        f.write(str(n + 1))
    chosen = plan[min(n, len(plan) - 1)]
    prompt = prompt_of(agent)
    with open(os.path.join(state, "calls"), "a") as f:
        f.write(f"{agent} {chosen} {prompt}\n")
    return chosen


def prompt_of(agent):
    """The task, from the arguments after the agent's prompt flag, else from stdin
    (as `claude -p`, `codex exec`, `gemini` and `opencode run` read a pipe)."""
    words = sys.argv[1:]
    if words and words[0] in ("exec", "run"):
        words = words[1:]  # `codex exec`, `opencode run`
    args = [a for a in words if not a.startswith("-")]
    if args:
        return " ".join(args)
    if not sys.stdin.isatty():
        return sys.stdin.read().strip()
    return ""


def work(agent, broken=False):
    """What a successful call leaves: its answer in the tree, and, when `broken`,
    the marker that makes the project's tests fail."""
    with open("solution.txt", "w") as f:
        f.write(f"solved by {agent}\n")
    if broken:
        with open("BROKEN", "w") as f:
            f.write(f"{agent} broke the tests\n")


def out(text):
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text):
    sys.stderr.write(text)
    sys.stderr.flush()


def half_done(agent):
    """A failed call still edits the tree first, as an agent interrupted mid-task
    does: the next agent must not start from it."""
    with open("half-done.txt", "w") as f:
        f.write(f"{agent} stopped half-way\n")
