#!/bin/sh
# ticketflow container entry point.
#   <ticketflow command> [args]      -> ticketflow <command> [args]   (every CLI command)
#   faust | python | sh | an absolute path ... -> run as given
# `exec` keeps the process as PID 1's direct replacement, so SIGTERM from the runtime reaches
# the worker, which finishes its batch, commits and leaves the consumer group.
set -eu

if [ "$#" -eq 0 ]; then
    set -- worker
fi

case "$1" in
    faust|python|python3|sh|bash|/*)
        exec "$@"
        ;;
    *)
        exec python -m ticketflow "$@"
        ;;
esac
