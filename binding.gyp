{
  # The native pieces of tmem, two minimal N-API addons built by the package's install script:
  # native/shm maps shared memory (Node has no mmap); a failed build only leaves the
  # shared-memory transport unavailable (src/util/shm-native.ts says why). native/loop polls
  # the event loop before it sleeps (src/util/busy-poll.ts); without it the daemon just sleeps.
  "targets": [
    {
      "target_name": "tmem_shm",
      "sources": ["native/shm/shm.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    },
    {
      "target_name": "tmem_loop",
      "sources": ["native/loop/loop.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
