#!/bin/sh
# ticketflow container entry point.
#   <ticketflow command> [args]  -> ticketflow <command> [args]   (worker, train, monitor, ...)
#   faust ... | python ... | sh   -> run as given
# `exec` keeps the process as PID 1's direct replacement, so SIGTERM from the runtime reaches
# the worker, which finishes its batch, commits and leaves the consumer group.
set -eu

if [ "$#" -eq 0 ]; then
    set -- worker
fi

case "$1" in
    -*|broker|topics|worker|produce|consume|sample|train|retrain|evaluate|monitor|drift|promote)
        exec python -m ticketflow_cli "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
