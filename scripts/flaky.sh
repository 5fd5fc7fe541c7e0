#!/bin/sh
# A stand-in for a flaky job: fails on its first two attempts, succeeds on the third.
# backstop tells each attempt its number in BACKSTOP_ATTEMPT.
attempt=${BACKSTOP_ATTEMPT:-1}
if [ "$attempt" -lt 3 ]; then
    echo "flaky.sh: attempt $attempt: connection reset by peer" >&2
    exit 1
fi
echo "flaky.sh: attempt $attempt: all good"
