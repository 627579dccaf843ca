/*
 * tmem_loop: poll before sleeping. When the event loop is about to block in epoll_wait and the
 * JavaScript side said a client is likely to send again soon, the loop first watches its own
 * epoll descriptor for a bounded time instead of going to sleep. A request that arrives within
 * that time is served without the wake-up of a sleeping thread, which on a virtual machine
 * costs tens of microseconds (the idle vCPU halts; the interrupt that wakes it goes through
 * the hypervisor) and is most of a depth-1 client's round trip.
 *
 * One call:
 *
 *   install() -> Int32Array    installs (once per process) a prepare and a check handle on
 *                              the loop of the calling thread and returns the memory shared
 *                              with them (the WORD_* and COUNT_* indexes below)
 *
 *   threadCpuNs() -> number    the calling thread's CPU time in nanoseconds
 *                              (CLOCK_THREAD_CPUTIME_ID): what a piece of work cost the thread
 *                              itself, without the time the OS ran something else and without
 *                              the runtime's helper threads (src/util/thread-cpu.ts)
 *
 * The prepare handle runs right before libuv computes its poll timeout and blocks. When the
 * "armed" word holds a budget (microseconds, set by JavaScript after serving a request) and
 * the loop is about to wait (no immediate, due timer or watcher change makes this turn's poll
 * a non-blocking one; such turns leave the word armed for the first turn that waits), it
 * clears the word and polls the epoll descriptor with a zero timeout until it reports an
 * event, the budget is spent, or the next timer is due. poll() on an epoll descriptor
 * only asks whether an event is ready; it takes no event away from libuv.
 *
 * Polling is adaptive. A score (0..SCORE_ONE) is a moving average of whether recent waits
 * ended within the budget: a poll that saw an event counts as yes, one that ran out as no, and
 * a sleep (taken while the score was low) counts as yes when the check handle, which runs
 * right after the poll phase, finds it ended within the budget. The loop polls only while the
 * score is at least SCORE_POLL, so a client that pauses between requests soon stops costing
 * polling CPU, and one that speeds up again brings it back.
 */
#include <node_api.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* The shared memory: two int32 words, then counters as float64 (exact up to 2^53, so they
   never wrap in a daemon's life). Indexes as JavaScript views them. */
#define WORD_ARMED 0  /* Int32: budget in microseconds for the next wait (0: none); native clears */
#define WORD_SCORE 1  /* Int32: the score, 0..SCORE_ONE */
#define COUNT_POLLS 1  /* Float64: waits that polled */
#define COUNT_HITS 2   /* Float64: polled waits that saw an event within the budget */
#define COUNT_SLEEPS 3 /* Float64: armed waits that slept at once (score too low) */
#define SHARED_BYTES 32

/* Largest budget honoured, whatever JavaScript writes: 1 ms. */
#define BUDGET_MAX_US 1000
#define SCORE_ONE 256
#define SCORE_POLL 96

typedef struct {
  uv_prepare_t prepare;
  uv_check_t check;
  int32_t *words;
  double *counts;
  napi_ref buffer;
  napi_env env; /* the environment (thread) that installed it: the only one it serves */
  uint64_t slept_at_ns; /* a sleep taken while armed: when it started, else 0 */
  int32_t slept_budget_us;
} loop_poll_t;

static loop_poll_t *installed = NULL;

static uint64_t now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static void note(loop_poll_t *state, int hit) {
  int32_t score = state->words[WORD_SCORE];
  score += ((hit ? SCORE_ONE : 0) - score) / 8;
  state->words[WORD_SCORE] = score;
}

static void on_prepare(uv_prepare_t *handle) {
  loop_poll_t *state = handle->data;
  int32_t budget = state->words[WORD_ARMED];
  if (budget <= 0) return;
  /* Work is due (immediates, a timer, watchers to register): this turn does not wait, and
     the armed wait is kept for the first turn that would. */
  int timeout_ms = uv_backend_timeout(handle->loop);
  if (timeout_ms == 0) return;
  state->words[WORD_ARMED] = 0;
  if (budget > BUDGET_MAX_US) budget = BUDGET_MAX_US;
  uint64_t start = now_ns();
  if (state->words[WORD_SCORE] < SCORE_POLL) {
    state->counts[COUNT_SLEEPS]++;
    state->slept_at_ns = start;
    state->slept_budget_us = budget;
    return;
  }
  uint64_t limit_ns = (uint64_t)budget * 1000u;
  if (timeout_ms > 0 && (uint64_t)timeout_ms * 1000000u < limit_ns)
    limit_ns = (uint64_t)timeout_ms * 1000000u;
  struct pollfd watch = { .fd = uv_backend_fd(handle->loop), .events = POLLIN, .revents = 0 };
  state->counts[COUNT_POLLS]++;
  for (;;) {
    if (poll(&watch, 1, 0) > 0) {
      state->counts[COUNT_HITS]++;
      note(state, 1);
      return;
    }
    if (now_ns() - start >= limit_ns) break;
    /* Let a task queued on this CPU run (often the very client we wait for). */
    sched_yield();
  }
  note(state, 0);
}

static void on_check(uv_check_t *handle) {
  loop_poll_t *state = handle->data;
  if (state->slept_at_ns == 0) return;
  uint64_t waited_ns = now_ns() - state->slept_at_ns;
  state->slept_at_ns = 0;
  note(state, waited_ns < (uint64_t)state->slept_budget_us * 1000u);
}

static napi_value loop_install(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value buffer;
  if (installed != NULL) {
    if (installed->env != env) {
      napi_throw_error(env, "ENOTSUP", "tmem_loop.install: already installed on another thread");
      return NULL;
    }
    if (napi_get_reference_value(env, installed->buffer, &buffer) != napi_ok) return NULL;
  } else {
    uv_loop_t *loop = NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
      napi_throw_error(env, "ENOTSUP", "tmem_loop.install: no event loop");
      return NULL;
    }
    void *data = NULL;
    if (napi_create_arraybuffer(env, SHARED_BYTES, &data, &buffer) != napi_ok)
      return NULL;
    static loop_poll_t state;
    memset(&state, 0, sizeof state);
    state.words = data;
    state.counts = data;
    state.env = env;
    state.words[WORD_SCORE] = SCORE_ONE;
    /* The ArrayBuffer's memory never moves; the reference keeps it alive for the process. */
    if (napi_create_reference(env, buffer, 1, &state.buffer) != napi_ok) return NULL;
    uv_prepare_init(loop, &state.prepare);
    uv_check_init(loop, &state.check);
    state.prepare.data = &state;
    state.check.data = &state;
    uv_prepare_start(&state.prepare, on_prepare);
    uv_check_start(&state.check, on_check);
    /* Neither handle keeps the process alive. */
    uv_unref((uv_handle_t *)&state.prepare);
    uv_unref((uv_handle_t *)&state.check);
    installed = &state;
  }
  napi_value words;
  /* The whole buffer as int32 words; JavaScript views the counters as float64 over it. */
  if (napi_create_typedarray(env, napi_int32_array, SHARED_BYTES / 4, buffer, 0, &words) !=
      napi_ok)
    return NULL;
  return words;
}

static napi_value loop_thread_cpu_ns(napi_env env, napi_callback_info info) {
  (void)info;
  struct timespec now;
  double ns = -1;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) == 0)
    ns = (double)now.tv_sec * 1e9 + (double)now.tv_nsec;
  napi_value result;
  if (napi_create_double(env, ns, &result) != napi_ok) return NULL;
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    { "install", NULL, loop_install, NULL, NULL, NULL, napi_enumerable, NULL },
    { "threadCpuNs", NULL, loop_thread_cpu_ns, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
