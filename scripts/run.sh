#!/usr/bin/env bash
echo "uploadwatch: the server is not built yet (see issue 4)." >&2
exit 1
