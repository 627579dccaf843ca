{
  # The one native piece of tmem: native/shm, a minimal N-API addon that maps shared memory
  # (Node has no mmap). Built by the package's install script; a failed build only leaves the
  # shared-memory transport unavailable (src/util/shm-native.ts says why).
  "targets": [
    {
      "target_name": "tmem_shm",
      "sources": ["native/shm/shm.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
