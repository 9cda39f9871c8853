#!/usr/bin/env bash
# `npm test`'s run: the two lanes of vitest.config.ts at the same time, one vitest process each.
# (In one vitest process, projects with the same worker count share one pool: the lanes would run
# one after the other.) Arguments go to both, e.g. a test file: the lane without it passes empty.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npx vitest run --project flower --passWithNoTests "$@" &
flower=$!
trap 'kill -INT "$flower" 2>/dev/null' INT TERM
npx vitest run --project api --passWithNoTests "$@"
api_rc=$?
wait "$flower"
flower_rc=$?
echo "lanes: api exit ${api_rc}, flower exit ${flower_rc}"
(( api_rc == 0 && flower_rc == 0 ))
