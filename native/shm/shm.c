/*
 * tmem_shm: shared memory for Node.js, which has no mmap of its own. Five calls and nothing
 * else:
 *
 *   memfd(name, bytes) -> fd     an anonymous shared-memory file of `bytes` bytes whose size
 *                                is sealed (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), so no
 *                                process that opens it can truncate it under a mapping (a read
 *                                past the end of a truncated mapping is SIGBUS, fatal to Node)
 *   map(fd, bytes) -> ArrayBuffer  mmap(MAP_SHARED, PROT_READ|PROT_WRITE) of the file's first
 *                                `bytes` bytes; the ArrayBuffer's memory is the mapping
 *   unmap(ArrayBuffer)           detaches the buffer (every view of it becomes empty, so no
 *                                JavaScript can touch the memory again); the pages are unmapped
 *                                when V8 releases the detached memory, at once or at the next GC
 *   sizeOf(fd) -> number         the file's size (fstat), to check a file before mapping it
 *   seals(fd) -> number          the file's seals (F_GET_SEALS: F_SEAL_SEAL 1, SHRINK 2, GROW 4,
 *                                WRITE 8) when it is plain shared memory (tmpfs: a memfd or a
 *                                /dev/shm file); EINVAL for any other file, a hugetlbfs memfd
 *                                included (a fault in it is a SIGBUS once the huge page pool
 *                                runs dry). The client maps the daemon's region only when this
 *                                says its size is sealed, so a daemon cannot SIGBUS it either
 *
 * Errors throw an Error whose `code` is the errno name (`ENOMEM`, `EINVAL`, ...).
 */
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* linux/magic.h: the filesystem of memfd and /dev/shm files (not of hugetlbfs memfds). */
#define TMPFS_MAGIC 0x01021994

/* Largest mapping we make: 1 GiB (the daemon's own limit is far below). */
#define SHM_MAP_BYTES_MAX ((size_t)1 << 30)

typedef struct {
  void *address;
  size_t bytes;
} mapping_t;

static napi_value throw_errno(napi_env env, int error, const char *what) {
  const char *code = "EIO";
  switch (error) {
    case EINVAL: code = "EINVAL"; break;
    case ENOMEM: code = "ENOMEM"; break;
    case EBADF: code = "EBADF"; break;
    case EACCES: code = "EACCES"; break;
    case EPERM: code = "EPERM"; break;
    case ENOSYS: code = "ENOSYS"; break;
    case EMFILE: code = "EMFILE"; break;
    case ENFILE: code = "ENFILE"; break;
    case ENODEV: code = "ENODEV"; break;
    case ENOSPC: code = "ENOSPC"; break;
    default: break;
  }
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  napi_throw_error(env, code, message);
  return NULL;
}

/* Reads argument `index` as an integer in [low, high]; throws a RangeError otherwise. */
static int int_argument(napi_env env, napi_value value, int64_t low, int64_t high, int64_t *out) {
  double number = 0;
  if (napi_get_value_double(env, value, &number) != napi_ok || number != (double)(int64_t)number ||
      number < (double)low || number > (double)high) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "tmem_shm: argument out of range");
    return 0;
  }
  *out = (int64_t)number;
  return 1;
}

static void release_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *mapping = hint;
  munmap(mapping->address, mapping->bytes);
  free(mapping);
}

static napi_value shm_memfd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[64];
  size_t length = 0;
  int64_t bytes = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tmem_shm.memfd(name, bytes)");
    return NULL;
  }
  if (!int_argument(env, argv[1], 1, (int64_t)SHM_MAP_BYTES_MAX, &bytes)) return NULL;
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return throw_errno(env, errno, "memfd_create");
  if (ftruncate(fd, (off_t)bytes) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int error = errno;
    close(fd);
    return throw_errno(env, error, "memfd size");
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value shm_map(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd = 0;
  int64_t bytes = 0;
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tmem_shm.map(fd, bytes)");
    return NULL;
  }
  if (!int_argument(env, argv[0], 0, INT32_MAX, &fd)) return NULL;
  if (!int_argument(env, argv[1], 1, (int64_t)SHM_MAP_BYTES_MAX, &bytes)) return NULL;
  struct stat status;
  if (fstat((int)fd, &status) != 0) return throw_errno(env, errno, "fstat");
  if (status.st_size < bytes) return throw_errno(env, EINVAL, "map: file shorter than mapping");
  mapping_t *mapping = malloc(sizeof *mapping);
  if (mapping == NULL) return throw_errno(env, ENOMEM, "map");
  mapping->bytes = (size_t)bytes;
  mapping->address = mmap(NULL, mapping->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
  if (mapping->address == MAP_FAILED) {
    int error = errno;
    free(mapping);
    return throw_errno(env, error, "mmap");
  }
  napi_value buffer;
  napi_status status_code = napi_create_external_arraybuffer(
    env, mapping->address, mapping->bytes, release_mapping, mapping, &buffer);
  if (status_code != napi_ok) {
    munmap(mapping->address, mapping->bytes);
    free(mapping);
    napi_throw_error(env, "ENOTSUP", "map: external ArrayBuffers are not allowed here");
    return NULL;
  }
  return buffer;
}

static napi_value shm_unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buffer = false;
  if (argc < 1 || napi_is_arraybuffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tmem_shm.unmap(arrayBuffer)");
    return NULL;
  }
  bool detached = false;
  napi_is_detached_arraybuffer(env, argv[0], &detached);
  if (!detached && napi_detach_arraybuffer(env, argv[0]) != napi_ok) {
    napi_throw_error(env, "EINVAL", "unmap: the buffer cannot be detached");
    return NULL;
  }
  return NULL;
}

/*
 * The descriptor a one-argument call takes (sizeOf, seals); 0 and a thrown RangeError when the
 * argument is missing or not one.
 */
static int fd_argument(napi_env env, napi_callback_info info, int64_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  /* A missing argument reads as undefined, which int_argument refuses. */
  return int_argument(env, argv[0], 0, INT32_MAX, fd);
}

static napi_value shm_size_of(napi_env env, napi_callback_info info) {
  int64_t fd = 0;
  if (!fd_argument(env, info, &fd)) return NULL;
  struct stat status;
  if (fstat((int)fd, &status) != 0) return throw_errno(env, errno, "fstat");
  napi_value result;
  napi_create_double(env, (double)status.st_size, &result);
  return result;
}

static napi_value shm_seals(napi_env env, napi_callback_info info) {
  int64_t fd = 0;
  if (!fd_argument(env, info, &fd)) return NULL;
  struct statfs filesystem;
  if (fstatfs((int)fd, &filesystem) != 0) return throw_errno(env, errno, "fstatfs");
  if (filesystem.f_type != TMPFS_MAGIC) return throw_errno(env, EINVAL, "seals: not shared memory");
  int seals = fcntl((int)fd, F_GET_SEALS);
  if (seals < 0) return throw_errno(env, errno, "seals");
  napi_value result;
  napi_create_int32(env, seals, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    { "memfd", NULL, shm_memfd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "map", NULL, shm_map, NULL, NULL, NULL, napi_enumerable, NULL },
    { "unmap", NULL, shm_unmap, NULL, NULL, NULL, napi_enumerable, NULL },
    { "sizeOf", NULL, shm_size_of, NULL, NULL, NULL, napi_enumerable, NULL },
    { "seals", NULL, shm_seals, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
