/*
 * sniffmux native splice: moves bytes between two connected TCP sockets with
 * splice(2) through pipes, in one native thread (epoll, edge-triggered), so
 * that once a connection is routed JavaScript is out of the data path.
 *
 * Threads and ownership
 *   - The JS main thread dup()s the two fds (adopt), allocates a conn and
 *     hands it to the splice thread through a mutex-protected command queue
 *     plus an eventfd. abort() goes through the same queue.
 *   - The splice thread owns everything about a live conn (fds, pipes,
 *     counters). When a conn ends it closes both fds, then puts the conn on a
 *     completion queue and, if that queue was empty, calls the one
 *     threadsafe function; the main thread drains the whole queue per call
 *     (completions are batched).
 *   - A conn is freed when its reference count drops to zero: one reference
 *     for the thread (dropped after the epoll batch in which it was closed, so
 *     later events of the same batch never touch freed memory), one for JS
 *     (dropped once its completion was delivered), one per abort in flight.
 *   - The tsfn is ref'd while any conn is live and unref'd when none is; both
 *     only on the main thread (adopt and the completion callback).
 *
 * Connects
 *   connect() makes the server side of a connection bound for this loop: the
 *   main thread opens a non-blocking socket and calls connect() (on loopback
 *   the kernel does the whole handshake inside that call), then the thread
 *   watches it for writability in a conn of its own (fd[0] -1, connecting)
 *   and reports END_CONNECTED (the fd is handed to JS, for adopt() with
 *   F_B_OWNED: no dup) or END_CONNECT_FAILED with errno, as a completion like
 *   any other. Node's own connect costs several times more than the rest of
 *   a short connection's set-up (a socket object, stream state, the connect
 *   callback, a write of the replay, its destroy at the hand-over).
 *
 * Pipes
 *   An idle connection holds no pipe: a direction takes one from a small pool
 *   (or pipe2) when it is readable, splices socket -> pipe, drains pipe ->
 *   socket, and returns the pipe as soon as it is empty. The pool keeps at most
 *   POOL_MAX idle pipes. If pipe2() fails (EMFILE/ENFILE) the chunk goes
 *   through recv()/send() and a per-thread buffer instead; an unsent tail is
 *   kept per direction in a malloc'd block (at most FALLBACK_CHUNK bytes).
 *
 *   Pipes cost descriptors, which accept() and connect() need too: at most
 *   pipes_max (pipe_limit: a sixteenth of RLIMIT_NOFILE, at most PIPES_MAX)
 *   exist at once, in use or pooled, and JS keeps that many out of its
 *   connection budget; past that a direction goes through recv()/send() as
 *   if pipe2() had failed. So slow readers, each pinning a full pipe, cannot
 *   use up the process's descriptors.
 *
 * Counters JS reads while the conn is live (live bytes in status and
 * metrics, bytes held): one writer (the thread), relaxed atomic loads and
 * stores, so a read is a recent value, never a torn one.
 *
 * Per-connection memory: sizeof(conn_t) (see connSize exported to JS), plus
 * the JS pre-buffers while they are written.
 */
#ifndef __linux__
#error "sniffmux native splice needs Linux (splice(2), epoll, eventfd)"
#endif

#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 128          /* idle pipes kept for reuse (2 fds each) */
#define PIPES_MIN 4           /* pipes allowed (pipe_limit) under the smallest open-file limit */
#define PIPES_MAX 256         /* ... and under the largest: bulk needs a pipe per busy direction, not per connection */
#define CHUNK (1 << 20)       /* ask splice for up to this much; the pipe's capacity limits it */
#define FALLBACK_CHUNK 16384  /* recv()/send() chunk when no pipe can be had */
#define BUDGET 16             /* chunks per direction per turn before other conns get a go */
#define SCAN_MS 250           /* idle timeouts are checked at least this often when any conn has one */
#define MAX_EVENTS 256
#define MAX_LISTENERS 64      /* listen() sockets the thread accepts on; beyond, Node's accept serves */
#define ACCEPT_RETRY_MS 100   /* out of descriptors, a listener tries accept() again this often */
/* clients accepted and not yet told to JS, at most: their descriptors are outside JS's count of them (the descriptor
   budget reserves this many), and JS refuses what it cannot serve only once told; accepting resumes as JS is told */
#define ACCEPT_WINDOW 32
/* a client accepted before its first bytes is told to JS when they come (one notice, not two), or after this long */
#define ACCEPT_HOLD_MS 5
/* how long the end of a splice that closed normally may wait for another notice to wake JS with (urgent_notice) */
#define LAZY_END_MS 1

#define LOAD(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
#define STORE(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELAXED)

enum { END_DONE = 0, END_A_ERROR, END_B_ERROR, END_A_TIMEOUT, END_B_TIMEOUT, END_ABORTED, END_CONNECTED, END_CONNECT_FAILED, END_PEEKED,
       END_ACCEPTED, END_ACCEPT_FAILED };

/* flags passed by adopt() */
enum { F_A_EOF = 1, F_B_EOF = 2, F_A_WR_SHUT = 4, F_B_WR_SHUT = 8, F_B_OWNED = 16 };

/* One direction: src = side d, dst = side 1-d (d 0 is a->b, 1 is b->a). */
typedef struct dir {
  char *pend;          /* bytes to send to dst before anything else */
  uint64_t moved;      /* bytes delivered to dst (read by JS) */
  uint64_t read;       /* bytes read from src by this loop (read by JS) */
  int pr, pw;          /* pipe read / write end, -1 when no pipe is held */
  uint32_t in_pipe;    /* bytes in the pipe (read by JS) */
  uint32_t pend_off, pend_len;
  uint32_t unsent;     /* pend_len - pend_off (read by JS) */
  uint8_t src_eof;     /* FIN (or EOF) seen on src */
  uint8_t dst_shut;    /* shutdown(SHUT_WR) done on dst (or was before adopt) */
  /* splice()d from the first read that fills FALLBACK_CHUNK on: before, chunks are small (a request, a
     reply, a ping), and recv()/send() through the thread's buffer costs less than two splices and a pipe */
  uint8_t bulk;
} dir_t;

typedef struct conn {
  dir_t d[2];
  struct conn *q_next;     /* command queue (main -> thread) */
  struct conn *done_next;  /* completion queue (thread -> main) */
  struct conn *ready_next; /* thread: conns with work left this turn */
  struct conn *prev, *next;/* thread: all registered conns (idle scan) */
  double id;
  uint32_t last[2];        /* ms (mod 2^32), last byte read from or written to each side */
  uint32_t last_rd[2];     /* ms (mod 2^32), last byte read from each side */
  int fd[2];
  uint32_t pre_left[2];    /* bytes of the JS pre-buffer (first bytes of pend) not yet sent */
  uint32_t idle_ms;
  int refs;                /* atomic */
  int err;                 /* errno for *-error */
  int8_t end, first;       /* END_*, -1 while live; first side to FIN/fail or -1 */
  uint8_t rd[2], wr[2];    /* edge-triggered readiness per side */
  /* a hangup (FIN, reset) has been told by an event of this side: its edge is spent, so reads go on to EOF even
     after a short read (which otherwise means the socket is drained: the next byte brings a new edge) */
  uint8_t hup[2];
  uint8_t queued, abort_req, registered, closed, in_ready;
  /* a connect() in flight on fd[1]: CONNECT_ONLY (fd[0] is -1, the fd goes to JS) or
     CONNECT_SPLICE (fd[0] is the client, spliced as soon as fd[1] connects): see js_connect */
  uint8_t connecting;
  uint8_t b_owned;         /* fd[1] was made here (connect), not a dup of a descriptor JS holds */
  /* front(): fd[0] is the descriptor of a socket JS accepted and still holds (never closed here); while
     peeking (PEEK_WAITING) the thread waits for its first bytes and tells them, unread, to JS (PEEK_TOLD) */
  uint8_t a_borrowed;
  uint8_t peeking;
  uint8_t connect_cmd;     /* front_connect() asked: next_fd / next_pre become fd[1] / d[0]'s pre-buffer (the thread applies it) */
  int next_fd;
  dir_t next_pre;
  uint32_t peek_max, peek_len;
  int peek_err;
  uint8_t peek_eof;
  char *peek;              /* the bytes told to JS (freed once delivered) */
  uint8_t notices;         /* under mu: NOTICE_* not yet delivered to JS (the conn is on the done list while non-zero) */
  uint32_t idle_after;     /* CONNECT_SPLICE: idle_ms once connected (no idle clock while connecting) */
  /* listen(): fd[0] is a listening socket (a dup of JS's); the thread accepts on it and tells each client as a front
     conn of its own (accepted), peek_max its peek; listen_retry: out of descriptors, accept() is tried again later */
  uint8_t listening, listen_retry, listen_more;
  /* listening: NODELAY_SET, TCP_NODELAY is set on it, and NODELAY_INHERITED once the backlog of before has been taken
     (accept() saw it empty): from then on its clients have it from accept(), Linux copying it from the listener */
  uint8_t listen_nodelay;
  /* made by the thread's accept(): a front conn (a_borrowed: the descriptor is JS's to close once told the end) whose
     fd[0] the thread registered at once; a_released (atomic): JS took it back (release()) and took it out of the epoll
     set itself, so the thread must not touch the descriptor again, whose number JS may already have closed and reused */
  uint8_t accepted, a_released;
  uint8_t untold_accept;   /* accepted, JS not told yet: held until its first bytes come or ACCEPT_HOLD_MS has passed */
  struct conn *hold_next;  /* thread: the held conns, oldest first (each holds a reference while on it) */
  int64_t accept_ms;       /* accepted: when (CLOCK_MONOTONIC ms), for JS to count the inspect delay from */
  uint16_t peer_port;
  uint32_t listen_id;      /* accepted: the id of the listener conn it came in on */
  char *peer;              /* accepted: the client's address (inet_ntop), freed once told */
} conn_t;

enum { CONNECT_ONLY = 1, CONNECT_SPLICE = 2 };
/* what the done list tells JS about a conn: it connected and now splices; it ended */
enum { NOTICE_CONNECTED = 1, NOTICE_END = 2, NOTICE_PEEKED = 4, NOTICE_ACCEPTED = 8, NOTICE_ACCEPT_FAILED = 16 };
enum { PEEK_WAITING = 1, PEEK_TOLD = 2 };
enum { NODELAY_SET = 1, NODELAY_INHERITED = 2 };
/* abort_req: 0 none, ABORT_ANY / ABORT_IF_CONNECTING asked, ABORT_TAKEN seen by the thread */
enum { ABORT_ANY = 1, ABORT_TAKEN = 2, ABORT_IF_CONNECTING = 3 };

typedef struct state {
  napi_env env;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  int started;
  int epfd, evfd;
  pthread_mutex_t mu;
  /* under mu */
  conn_t *q_head, *q_tail;
  conn_t *done_head, *done_tail;
  int stop;
  int signalled;           /* JS has been woken (call_js is due) for the done list */
  int lazy;                /* thread: the done list holds lazy ends only, JS not woken yet; lazy_at: when it will be */
  int64_t lazy_at;
  /* main thread only */
  uint64_t live;
  /* splice thread only */
  conn_t *all;
  conn_t *ready_head, *ready_tail;
  conn_t *dead;
  uint32_t n_timed;
  int64_t now, next_scan;  /* ms, CLOCK_MONOTONIC */
  uint32_t t;              /* (uint32_t)now, for the per-conn stamps */
  int npool;
  int pool[POOL_MAX][2];
  uint32_t pipes_max;      /* pipes in use + pooled, at most (set by start) */
  char *buf;
  conn_t *listeners[MAX_LISTENERS];
  int n_listeners, n_retry, n_more;
  /* atomic: accepted clients not yet told to JS (ACCEPT_WINDOW at most); the thread waits for JS to be told some (accept_waiting: wake it then) */
  uint32_t untold, accept_waiting;
  int64_t retry_at;        /* ms: when listeners out of descriptors try accept() again */
  conn_t *hold_head, *hold_tail; /* accepted conns waiting for their first bytes before JS is told of them */
  uint32_t accepted_seq;   /* ids of accepted conns: -1, -2, ... (JS's own are positive) */
  /* stats, written by the thread, read racily by JS */
  uint32_t pipes_in_use, pipes_created, fallback_chunks, pipes_refused, small_chunks;
} state_t;

/* ------------------------------------------------------------------ utils */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_unref(conn_t *c) {
  if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) free(c);
}

/* A conn with no descriptors and no pipes yet, not ended, referenced by the thread and by JS; NULL when out of memory. */
static conn_t *new_conn(double id) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd[0] = c->fd[1] = -1;
  for (int i = 0; i < 2; i++) c->d[i].pr = c->d[i].pw = -1;
  c->id = id;
  c->end = -1;
  c->first = -1;
  c->refs = 2; /* thread + JS */
  return c;
}

static void wake(state_t *s) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(s->evfd, &one, sizeof one); while (r < 0 && errno == EINTR);
}

/* ------------------------------------------------------------------ pipes */

/*
 * Pipes at most (in use and pooled) under an open-file limit of fds: a
 * sixteenth of it, between PIPES_MIN and PIPES_MAX. JS reserves twice this
 * many descriptors in its budget (pipeLimit), so that pipes never take a
 * descriptor that accept() or connect() was counted on; past it a direction
 * goes through recv()/send(), which costs a copy, not a connection.
 */
static uint32_t pipe_limit(uint64_t fds) {
  return fds / 16 < PIPES_MIN ? PIPES_MIN : fds / 16 > PIPES_MAX ? PIPES_MAX : (uint32_t)(fds / 16);
}

static int pipe_acquire(state_t *s, dir_t *x) {
  if (x->pr >= 0) return 0;
  if (s->npool > 0) {
    STORE(s->npool, s->npool - 1);
    x->pr = s->pool[s->npool][0];
    x->pw = s->pool[s->npool][1];
  } else {
    int p[2];
    if (s->pipes_in_use >= s->pipes_max) {
      STORE(s->pipes_refused, s->pipes_refused + 1);
      return -1;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
    x->pr = p[0];
    x->pw = p[1];
    STORE(s->pipes_created, s->pipes_created + 1);
  }
  STORE(s->pipes_in_use, s->pipes_in_use + 1);
  return 0;
}

/* Gives the pipe back: to the pool if empty and the pool has room, else closed. */
static void pipe_release(state_t *s, dir_t *x) {
  if (x->pr < 0) return;
  if (x->in_pipe == 0 && s->npool < POOL_MAX) {
    s->pool[s->npool][0] = x->pr;
    s->pool[s->npool][1] = x->pw;
    STORE(s->npool, s->npool + 1);
  } else {
    close(x->pr);
    close(x->pw);
  }
  x->pr = x->pw = -1;
  STORE(x->in_pipe, 0);
  STORE(s->pipes_in_use, s->pipes_in_use - 1);
}

static void drop_pending(dir_t *x) {
  free(x->pend);
  x->pend = NULL;
  x->pend_off = x->pend_len = 0;
  STORE(x->unsent, 0);
}

/* ------------------------------------------------------------ completion */

/* JS must hear at once of anything it acts on (a client to decide, a connect's outcome, an error, an abort, a
   listener closed); the end of a splice that closed normally (END_DONE, which only pump() sets, so never a listener
   nor a connect) only settles its bookkeeping, so it may wait LAZY_END_MS for another notice to wake JS with: under
   load, one wake-up for an accept and the ends before it */
static int urgent_notice(const conn_t *c, uint8_t notice) {
  return notice != NOTICE_END || c->end != END_DONE;
}

/* Tells JS (on its next batch) what became of c; a conn is on the done list once, with what is to be told. */
static void notify(state_t *s, conn_t *c, uint8_t notice) {
  pthread_mutex_lock(&s->mu);
  if (c->notices == 0) {
    c->done_next = NULL;
    if (s->done_tail) s->done_tail->done_next = c; else s->done_head = c;
    s->done_tail = c;
  }
  c->notices |= notice;
  int call = 0;
  if (!s->signalled) {
    if (urgent_notice(c, notice)) call = s->signalled = 1;
    else if (!s->lazy) {
      s->lazy = 1;
      s->lazy_at = s->now + LAZY_END_MS;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (call) napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
}

/* The lazy ends' time is up: JS is woken for them unless it has been (or has taken them) since. */
static void flush_lazy(state_t *s) {
  s->lazy = 0;
  pthread_mutex_lock(&s->mu);
  int call = !s->signalled && s->done_head != NULL;
  if (call) s->signalled = 1;
  pthread_mutex_unlock(&s->mu);
  if (call) napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
}

/* The idle clock of a conn starts: at registration, or once a CONNECT_SPLICE has connected. */
static void start_idle_clock(state_t *s, conn_t *c) {
  c->last[0] = c->last[1] = c->last_rd[0] = c->last_rd[1] = s->t;
  if (c->idle_ms) {
    s->n_timed++;
    if (s->n_timed == 1 || s->now + c->idle_ms < s->next_scan) s->next_scan = s->now + c->idle_ms;
  }
}

static void forget_listener(state_t *s, conn_t *c) {
  for (int i = 0; i < s->n_listeners; i++) {
    if (s->listeners[i] != c) continue;
    s->listeners[i] = s->listeners[--s->n_listeners];
    break;
  }
  if (c->listen_retry) s->n_retry--;
  if (c->listen_more) s->n_more--;
  c->listen_retry = c->listen_more = 0;
}

static void close_conn(state_t *s, conn_t *c) {
  if (c->closed) return;
  c->closed = 1;
  if (c->connect_cmd) { /* asked for, never applied */
    c->connect_cmd = 0;
    close(c->next_fd);
    free(c->next_pre.pend);
  }
  for (int i = 0; i < 2; i++) {
    if (c->fd[i] < 0) continue; /* a connect's missing side, or a connected fd JS took */
    /* a descriptor nobody else holds leaves the epoll set as it closes; a dup (or JS's own) must leave it first */
    if (c->registered && !(i == 1 && c->b_owned) && !(i == 0 && __atomic_load_n(&c->a_released, __ATOMIC_ACQUIRE)))
      epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd[i], NULL);
    if (!(i == 0 && c->a_borrowed)) close(c->fd[i]); /* JS closes its own socket once told the end */
    c->fd[i] = -1;
    pipe_release(s, &c->d[i]);
    drop_pending(&c->d[i]);
  }
  if (c->listening) forget_listener(s, c);
  if (c->registered) {
    if (c->prev) c->prev->next = c->next; else s->all = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (c->idle_ms) s->n_timed--;
  }
  /* the thread's reference is dropped after this epoll batch (if c is on the
     ready list, when the ready list gets to it) */
  if (!c->in_ready) {
    c->ready_next = s->dead;
    s->dead = c;
  }
  notify(s, c, NOTICE_END);
}

static void fail(state_t *s, conn_t *c, int side, int err) {
  if (c->closed) return;
  c->end = side ? END_B_ERROR : END_A_ERROR;
  c->err = err;
  if (c->first < 0) c->first = (int8_t)side;
  close_conn(s, c);
}

static void mark_ready(state_t *s, conn_t *c) {
  if (c->in_ready || c->closed) return;
  c->in_ready = 1;
  c->ready_next = NULL;
  if (s->ready_tail) s->ready_tail->ready_next = c; else s->ready_head = c;
  s->ready_tail = c;
}

/* ------------------------------------------------------------------- pump */

static void delivered(state_t *s, conn_t *c, dir_t *x, int dst, size_t n) {
  STORE(x->moved, x->moved + n);
  c->last[dst] = s->t;
}

static void got(state_t *s, conn_t *c, dir_t *x, int src, size_t n) {
  STORE(x->read, x->read + n);
  c->last[src] = c->last_rd[src] = s->t;
}

static int send_pending(state_t *s, conn_t *c, dir_t *x, int dst) {
  while (x->pend_off < x->pend_len) {
    ssize_t n = send(c->fd[dst], x->pend + x->pend_off, x->pend_len - x->pend_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->wr[dst] = 0;
        return 0;
      }
      fail(s, c, dst, n < 0 ? errno : EIO); /* 0 for a non-empty send: never seen, but never a spin */
      return -1;
    }
    x->pend_off += (uint32_t)n;
    STORE(x->unsent, x->pend_len - x->pend_off);
    delivered(s, c, x, dst, (size_t)n);
    uint32_t pre = c->pre_left[dst ^ 1];
    c->pre_left[dst ^ 1] = pre > (uint32_t)n ? pre - (uint32_t)n : 0;
  }
  drop_pending(x);
  return 1;
}

static int dir_finished(const dir_t *x) {
  return x->src_eof && x->dst_shut && !x->pend && !x->in_pipe;
}

/*
 * Moves what it can in direction d. Returns -1 if the conn was closed,
 * 1 if the budget ran out with work left, 0 if blocked (or finished).
 */
static int pump_dir(state_t *s, conn_t *c, int d) {
  dir_t *x = &c->d[d];
  const int src = d, dst = 1 - d;
  for (int turn = 0;; turn++) {
    if (x->pend) {
      if (x->dst_shut) {
        drop_pending(x); /* dst's writable side was ended before adopt: nowhere to go */
      } else {
        if (!c->wr[dst]) return 0;
        int r = send_pending(s, c, x, dst);
        if (r <= 0) return r;
      }
    }
    while (x->in_pipe) {
      if (x->dst_shut) {
        pipe_release(s, x); /* closes it: contents discarded */
        break;
      }
      if (!c->wr[dst]) return 0;
      ssize_t n = splice(x->pr, NULL, c->fd[dst], NULL, x->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
          c->wr[dst] = 0;
          return 0;
        }
        fail(s, c, dst, n < 0 ? errno : EIO); /* 0 from a non-empty pipe: never seen, but never a spin */
        return -1;
      }
      STORE(x->in_pipe, x->in_pipe - (uint32_t)n);
      delivered(s, c, x, dst, (size_t)n);
    }
    pipe_release(s, x);
    if (x->src_eof) {
      if (!x->dst_shut) {
        x->dst_shut = 1;
        /* the other way is over too, so dst is closed next: a descriptor made here sends its FIN as it closes */
        const int closing = dst == 1 && c->b_owned && dir_finished(&c->d[1]);
        if (!closing && shutdown(c->fd[dst], SHUT_WR) < 0 && errno != ENOTCONN) {
          fail(s, c, dst, errno);
          return -1;
        }
      }
      return 0;
    }
    if (!c->rd[src]) return 0;
    if (turn >= BUDGET) return 1;

    const int want_pipe = x->bulk && !x->dst_shut;
    if (want_pipe && pipe_acquire(s, x) == 0) {
      ssize_t n = splice(c->fd[src], NULL, x->pw, NULL, CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        STORE(x->in_pipe, (uint32_t)n);
        got(s, c, x, src, (size_t)n);
        continue;
      }
      if (n == 0) {
        x->src_eof = 1;
        if (c->first < 0) c->first = (int8_t)src;
        continue;
      }
      int e = errno;
      pipe_release(s, x);
      if (e == EINTR) continue;
      if (e == EAGAIN) { /* the pipe was empty, so it is the socket that has nothing */
        c->rd[src] = 0;
        return 0;
      }
      fail(s, c, src, e);
      return -1;
    }

    /* Small chunks (not bulk yet), no pipe to be had (fd limit, pipes_max), or bytes to discard (dst_shut): recv()/send(). */
    ssize_t n = recv(c->fd[src], s->buf, FALLBACK_CHUNK, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->rd[src] = 0;
        return 0;
      }
      fail(s, c, src, errno);
      return -1;
    }
    if (n == 0) {
      x->src_eof = 1;
      if (c->first < 0) c->first = (int8_t)src;
      continue;
    }
    got(s, c, x, src, (size_t)n);
    if (x->dst_shut) continue; /* discarded, see pend above */
    if (want_pipe) STORE(s->fallback_chunks, s->fallback_chunks + 1);
    else STORE(s->small_chunks, s->small_chunks + 1);
    if (n == FALLBACK_CHUNK) x->bulk = 1;
    else if (!c->hup[src]) c->rd[src] = 0; /* drained: no recv() just to hear EAGAIN */
    ssize_t w = 0;
    if (c->wr[dst]) {
      w = send(c->fd[dst], s->buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          fail(s, c, dst, errno);
          return -1;
        }
        if (errno != EINTR) c->wr[dst] = 0;
        w = 0;
      }
      if (w) delivered(s, c, x, dst, (size_t)w);
    }
    if (w < n) {
      x->pend = malloc((size_t)(n - w));
      if (!x->pend) {
        fail(s, c, dst, ENOMEM);
        return -1;
      }
      memcpy(x->pend, s->buf + w, (size_t)(n - w));
      x->pend_off = 0;
      x->pend_len = (uint32_t)(n - w);
      STORE(x->unsent, x->pend_len);
    }
  }
}

static void pump(state_t *s, conn_t *c) {
  int more = 0;
  for (int d = 0; d < 2; d++) {
    int r = pump_dir(s, c, d);
    if (r < 0) return;
    more |= r;
  }
  if (dir_finished(&c->d[0]) && dir_finished(&c->d[1])) {
    c->end = END_DONE;
    close_conn(s, c);
    return;
  }
  if (more) mark_ready(s, c);
}

/* ------------------------------------------------------------ the thread */

/* Watches side i of c; 0, or the errno of epoll_ctl. */
static int watch(state_t *s, conn_t *c, int i, uint32_t events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.ptr = (void *)((uintptr_t)c | (uintptr_t)i);
  return epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->fd[i], &ev) < 0 ? errno : 0;
}

#define SPLICE_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

/* c joins the registered conns (the idle scan's list); its descriptors are watched by the caller. */
static void link_conn(state_t *s, conn_t *c) {
  c->registered = 1;
  c->next = s->all;
  c->prev = NULL;
  if (s->all) s->all->prev = c;
  s->all = c;
  start_idle_clock(s, c);
}

static void do_register(state_t *s, conn_t *c) {
  link_conn(s, c);
  if (c->listening) {
    if (s->n_listeners == MAX_LISTENERS) {
      fail(s, c, 0, EMFILE);
      return;
    }
    s->listeners[s->n_listeners++] = c;
  }
  /* a CONNECT_SPLICE server side is watched for the splice from the start, so connecting costs no second epoll_ctl */
  uint32_t events = c->listening ? EPOLLIN | EPOLLET : c->connecting == CONNECT_ONLY ? EPOLLOUT | EPOLLET : SPLICE_EVENTS;
  for (int i = c->connecting ? 1 : 0; i < (c->peeking ? 1 : 2); i++) {
    if (c->fd[i] < 0) continue; /* answer(): no server side */
    int e = watch(s, c, i, events);
    if (e) {
      fail(s, c, i, e);
      return;
    }
  }
  /* pre-buffers and carried-over FINs may have work before any event */
  if (!c->connecting && !c->peeking && !c->listening) mark_ready(s, c);
}

/* A front conn's first bytes, read without taking them (MSG_PEEK), for JS to sniff: told once. */
static void front_peek(state_t *s, conn_t *c, uint32_t events) {
  c->peek = malloc(c->peek_max ? c->peek_max : 1);
  if (!c->peek) return; /* told at the next event */
  ssize_t n;
  do n = recv(c->fd[0], c->peek, c->peek_max, MSG_PEEK | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    free(c->peek);
    c->peek = NULL;
    return;
  }
  if (n < 0) c->peek_err = errno;
  c->peek_len = n > 0 ? (uint32_t)n : 0;
  c->peek_eof = n == 0 || (events & (EPOLLRDHUP | EPOLLHUP)) != 0;
  c->peeking = PEEK_TOLD;
  notify(s, c, c->untold_accept ? NOTICE_ACCEPTED | NOTICE_PEEKED : NOTICE_PEEKED);
  c->untold_accept = 0;
}

/* ----------------------------------------------------------------- accept */

/* The client's address as Node prints it (inet_ntop, an IPv4-mapped one left to JS to unmap); empty if unknown. */
static void set_peer(conn_t *c, const struct sockaddr_storage *ss) {
  c->peer = malloc(INET6_ADDRSTRLEN);
  if (!c->peer) return;
  c->peer[0] = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &v4->sin_addr, c->peer, INET6_ADDRSTRLEN);
    c->peer_port = ntohs(v4->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &v6->sin6_addr, c->peer, INET6_ADDRSTRLEN);
    c->peer_port = ntohs(v6->sin6_port);
  }
}

/*
 * A client the thread accepted on listener l becomes a front conn (as
 * front() makes of a socket JS accepted), told to JS (END_ACCEPTED with its
 * descriptor, which is JS's to close from then on) with its first bytes if
 * they have come already (END_PEEKED), else when they come. Watched from the
 * start, so that connecting it later costs no epoll_ctl for it. A client that
 * cannot be watched (or no memory) is closed untold, as a backlog overflow.
 */
static void take_client(state_t *s, conn_t *l, int fd, const struct sockaddr_storage *ss) {
  int one = 1;
  if (l->listen_nodelay != NODELAY_INHERITED) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  conn_t *c = new_conn(-(double)++s->accepted_seq);
  if (!c) {
    close(fd);
    return;
  }
  c->fd[0] = fd;
  c->a_borrowed = 1;
  c->accepted = 1;
  c->listen_id = (uint32_t)l->id;
  c->peek_max = l->peek_max;
  c->peeking = PEEK_WAITING;
  if (watch(s, c, 0, SPLICE_EVENTS)) {
    close(fd);
    free(c);
    return;
  }
  link_conn(s, c);
  set_peer(c, ss);
  c->accept_ms = s->now;
  __atomic_add_fetch(&s->untold, 1, __ATOMIC_SEQ_CST);
  c->untold_accept = 1;
  front_peek(s, c, 0); /* the first bytes often came with the connection: told with it */
  if (!c->untold_accept) return;
  /* else they are usually a moment away: held, so that JS is woken once for both */
  __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
  c->hold_next = NULL;
  if (s->hold_tail) s->hold_tail->hold_next = c; else s->hold_head = c;
  s->hold_tail = c;
}

/* Held accepted conns whose ACCEPT_HOLD_MS is over are told to JS without their bytes (which JS then waits for). */
static void tell_held(state_t *s) {
  while (s->hold_head && s->now >= s->hold_head->accept_ms + ACCEPT_HOLD_MS) {
    conn_t *c = s->hold_head;
    s->hold_head = c->hold_next;
    if (!s->hold_head) s->hold_tail = NULL;
    if (c->untold_accept && !c->closed) notify(s, c, NOTICE_ACCEPTED);
    c->untold_accept = 0;
    conn_unref(c);
  }
}

/* Accepts every client waiting on l (edge-triggered: until EAGAIN). Out of descriptors (or memory) it tries again ACCEPT_RETRY_MS later, and JS hears why. */
static void accept_all(state_t *s, conn_t *l) {
  for (;;) {
    if (__atomic_load_n(&s->untold, __ATOMIC_SEQ_CST) >= ACCEPT_WINDOW) {
      /* told first, then looked at again: JS, telling some, either sees the flag or has lowered untold already */
      __atomic_store_n(&s->accept_waiting, 1, __ATOMIC_SEQ_CST);
      if (__atomic_load_n(&s->untold, __ATOMIC_SEQ_CST) >= ACCEPT_WINDOW) {
        if (!l->listen_more) s->n_more++;
        l->listen_more = 1;
        return;
      }
      __atomic_store_n(&s->accept_waiting, 0, __ATOMIC_SEQ_CST);
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(l->fd[0], (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      take_client(s, l, fd, &ss);
      continue;
    }
    int e = errno;
    if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM) continue; /* that client is gone; the next may be there */
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (l->listen_nodelay == NODELAY_SET) l->listen_nodelay = NODELAY_INHERITED;
      break;
    }
    if (!l->listen_retry) s->n_retry++;
    l->listen_retry = 1;
    s->retry_at = s->now + ACCEPT_RETRY_MS;
    l->err = e;
    notify(s, l, NOTICE_ACCEPT_FAILED);
    return;
  }
  if (l->listen_retry) s->n_retry--;
  l->listen_retry = 0;
  if (l->listen_more) s->n_more--;
  l->listen_more = 0;
}

/* Listeners that stopped accepting (out of descriptors: retry; a full window: more) go on. */
static void resume_accepts(state_t *s, int retry) {
  for (int i = s->n_listeners - 1; i >= 0; i--) {
    if (i >= s->n_listeners) continue;
    conn_t *l = s->listeners[i];
    if (retry ? l->listen_retry : l->listen_more && !l->listen_retry) accept_all(s, l);
  }
}

/* What goes to b before anything read from a (a replay, a PROXY header): taken from *pre, which is left empty. */
static void set_pre_a(conn_t *c, dir_t *pre) {
  c->d[0].pend = pre->pend;
  c->d[0].pend_len = pre->pend_len;
  c->d[0].pend_off = 0;
  c->d[0].unsent = pre->unsent;
  c->pre_left[0] = pre->pend_len;
  memset(pre, 0, sizeof *pre);
}

/* front_connect() of a front conn whose bytes JS has sniffed: its server side, connecting, joins the epoll set. */
static void apply_connect(state_t *s, conn_t *c) {
  c->connect_cmd = 0;
  c->fd[1] = c->next_fd;
  c->b_owned = 1;
  set_pre_a(c, &c->next_pre);
  c->peeking = 0;
  c->connecting = CONNECT_SPLICE;
  int e = watch(s, c, 1, SPLICE_EVENTS);
  if (e) {
    c->end = END_CONNECT_FAILED;
    c->err = e;
    close_conn(s, c);
  }
}

/*
 * The connect on fd[1] finished: established (JS takes the fd, adopts it
 * with F_B_OWNED) or failed (the fd is closed here, errno for JS).
 */
static void connect_done(state_t *s, conn_t *c, uint32_t events) {
  int so = 0;
  socklen_t len = sizeof so;
  /* writable and nothing wrong: connected, no need to ask */
  if ((events & (EPOLLERR | EPOLLHUP)) || !(events & EPOLLOUT)) {
    if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &so, &len) < 0) so = errno;
    if (so == 0) so = ECONNRESET;
  }
  if (c->connecting == CONNECT_SPLICE) {
    if (so != 0) {
      c->end = END_CONNECT_FAILED;
      c->err = so;
      close_conn(s, c); /* closes the dup of the client too: JS's own descriptor goes on */
      return;
    }
    c->connecting = 0;
    int e = 0;
    if (c->a_borrowed) {
      /* watched since it was peeked: its edges are gone, so look at both ways once */
      c->rd[0] = c->wr[0] = 1;
    } else {
      e = watch(s, c, 0, SPLICE_EVENTS);
    }
    if (e) {
      /* JS hears of the connect first (it adopts the conn), then of the failure */
      notify(s, c, NOTICE_CONNECTED);
      fail(s, c, 0, e);
      return;
    }
    c->idle_ms = c->idle_after;
    start_idle_clock(s, c);
    c->wr[1] = 1;
    if (events & (EPOLLIN | EPOLLRDHUP)) c->rd[1] = 1;
    notify(s, c, NOTICE_CONNECTED);
    mark_ready(s, c); /* the replay goes at once */
    return;
  }
  if (so == 0) {
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd[1], NULL);
    c->fd[1] = -1; /* JS's from now on */
    c->end = END_CONNECTED;
  } else {
    c->end = END_CONNECT_FAILED;
    c->err = so;
  }
  close_conn(s, c);
}

static void drain_commands(state_t *s) {
  pthread_mutex_lock(&s->mu);
  conn_t *c = s->q_head;
  s->q_head = s->q_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (c) {
    /* abort() may re-queue c as soon as queued is 0, so read the link first, under the lock */
    pthread_mutex_lock(&s->mu);
    conn_t *nx = c->q_next;
    c->q_next = NULL;
    c->queued = 0;
    int abort_now = c->abort_req == ABORT_ANY || c->abort_req == ABORT_IF_CONNECTING;
    /* a cancelled connect that has connected already goes on: JS hears it connected, and may abort it later */
    int spare = c->abort_req == ABORT_IF_CONNECTING && !c->connecting && !c->connect_cmd;
    if (abort_now) c->abort_req = spare ? 0 : ABORT_TAKEN;
    pthread_mutex_unlock(&s->mu);
    if (abort_now) {
      if (!c->closed && !spare) {
        c->end = END_ABORTED;
        close_conn(s, c);
      }
      conn_unref(c); /* the reference taken by abort() */
    }
    if (!c->closed && !c->registered && !abort_now) do_register(s, c);
    /* front() with a connect registers and connects in the same pass */
    if (!c->closed && c->registered && c->connect_cmd) apply_connect(s, c);
    c = nx;
  }
}

/*
 * A side times out after idle_ms without a byte read from or written to it.
 * Both sides of a splice see mirrored traffic, so they usually expire in the
 * same scan; then the side reported is the one holding things up: the
 * destination of bytes that are waiting to be written, else the side that has
 * been silent (sent nothing) for longer, else a.
 */
static void scan_timeouts(state_t *s) {
  int64_t next = s->now + SCAN_MS;
  conn_t *c = s->all;
  while (c) {
    conn_t *nx = c->next;
    if (c->idle_ms) {
      uint32_t ea = s->t - c->last[0], eb = c->fd[1] < 0 ? ea : s->t - c->last[1]; /* elapsed, wrap-safe; answer(): a alone */
      int xa = ea >= c->idle_ms, xb = eb >= c->idle_ms;
      if (xa || xb) {
        int side;
        int stuck_b = c->d[0].in_pipe || c->d[0].pend; /* a->b bytes waiting for b */
        int stuck_a = c->d[1].in_pipe || c->d[1].pend;
        if (xa != xb) side = xb;
        else if (stuck_a != stuck_b) side = stuck_b;
        else side = (uint32_t)(s->t - c->last_rd[1]) > (uint32_t)(s->t - c->last_rd[0]);
        c->end = side ? END_B_TIMEOUT : END_A_TIMEOUT;
        if (c->first < 0) c->first = (int8_t)side;
        close_conn(s, c);
      } else {
        int64_t dl = s->now + (c->idle_ms - (ea > eb ? ea : eb));
        if (dl < next) next = dl;
      }
    }
    c = nx;
  }
  s->next_scan = next;
}

/* The soonest of the thread's timed work (idle scan, accept retry, held accepts, lazy ends); INT64_MAX when none. */
static int64_t next_deadline(const state_t *s) {
  int64_t at = INT64_MAX;
  if (s->n_timed) at = s->next_scan;
  if (s->n_retry && s->retry_at < at) at = s->retry_at;
  if (s->hold_head && s->hold_head->accept_ms + ACCEPT_HOLD_MS < at) at = s->hold_head->accept_ms + ACCEPT_HOLD_MS;
  if (s->lazy && s->lazy_at < at) at = s->lazy_at;
  return at;
}

static void *thread_main(void *arg) {
  state_t *s = arg;
  struct epoll_event evs[MAX_EVENTS];
  s->now = now_ms();
  s->t = (uint32_t)s->now;
  s->next_scan = s->now + SCAN_MS;
  for (;;) {
    int timeout = -1;
    if (s->ready_head) {
      timeout = 0;
    } else {
      int64_t at = next_deadline(s);
      if (at != INT64_MAX) {
        int64_t t = at - now_ms();
        timeout = t < 0 ? 0 : (int)t;
      }
    }
    int n = epoll_wait(s->epfd, evs, MAX_EVENTS, timeout);
    if (n < 0) n = 0; /* EINTR */
    s->now = now_ms();
    s->t = (uint32_t)s->now;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        uint64_t v;
        ssize_t r;
        do r = read(s->evfd, &v, sizeof v); while (r < 0 && errno == EINTR);
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop) return NULL;
        drain_commands(s);
        if (s->n_more) resume_accepts(s, 0);
        continue;
      }
      uintptr_t p = (uintptr_t)evs[i].data.ptr;
      conn_t *c = (conn_t *)(p & ~(uintptr_t)1);
      int side = (int)(p & 1);
      if (c->closed) continue;
      /* taken back by JS, which may have closed the descriptor and had its number reused already */
      if (c->accepted && __atomic_load_n(&c->a_released, __ATOMIC_ACQUIRE)) continue;
      if (c->listening) {
        accept_all(s, c);
        continue;
      }
      uint32_t e = evs[i].events;
      if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->hup[side] = 1;
      if (c->peeking) {
        /* the first event of a new socket is usually "writable" alone: nothing to peek at yet */
        if (c->peeking == PEEK_WAITING && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) front_peek(s, c, e);
        continue;
      }
      if (c->connecting) {
        if (side == 1) connect_done(s, c, e); /* a front conn's client side waits (rd/wr are set when connected) */
        continue;
      }
      if (e & EPOLLERR) {
        int so = 0;
        socklen_t len = sizeof so;
        if (getsockopt(c->fd[side], SOL_SOCKET, SO_ERROR, &so, &len) == 0 && so != 0) {
          fail(s, c, side, so);
          continue;
        }
      }
      if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->rd[side] = 1;
      if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->wr[side] = 1;
      mark_ready(s, c);
    }
    /* one turn for every conn with work; those with more go round again */
    conn_t *list = s->ready_head;
    s->ready_head = s->ready_tail = NULL;
    while (list) {
      conn_t *c = list;
      list = c->ready_next;
      c->in_ready = 0;
      c->ready_next = NULL;
      if (c->closed) {
        c->ready_next = s->dead; /* closed while queued: its thread ref goes now */
        s->dead = c;
        continue;
      }
      pump(s, c);
    }
    if (s->n_timed && s->now >= s->next_scan) scan_timeouts(s);
    if (s->n_retry && s->now >= s->retry_at) resume_accepts(s, 1);
    if (s->hold_head) tell_held(s);
    if (s->lazy && now_ms() >= s->lazy_at) flush_lazy(s);
    while (s->dead) {
      conn_t *c = s->dead;
      s->dead = c->ready_next;
      conn_unref(c);
    }
  }
}

/* -------------------------------------------------------------- main side */

#define BATCH_FIELDS 10

/* Notices a conn can have in one batch: accepted (with its peek), accept failed, peeked, connected, end. */
#define NOTICES_PER_CONN 5

/* Appends one notice's fields to the batch (a Float64Array) JS reads BATCH_FIELDS at a time. */
static void push_fields(double *out, uint32_t *i, const double vals[BATCH_FIELDS]) {
  if (!out) return;
  memcpy(out + *i, vals, sizeof(double) * BATCH_FIELDS);
  *i += BATCH_FIELDS;
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)data;
  state_t *s = context;
  if (env == NULL) return; /* tsfn being torn down with the environment; cleanup() frees */
  /* Taken whole under the lock: once its notices are reset the thread may put a conn on the list again (its end after its connect). */
  pthread_mutex_lock(&s->mu);
  size_t n = 0;
  for (conn_t *c = s->done_head; c; c = c->done_next) n++;
  conn_t **conns = n ? malloc(n * sizeof *conns) : NULL;
  uint8_t *notices = n ? malloc(n) : NULL;
  if (n && (!conns || !notices)) { /* left on the list for the next call */
    pthread_mutex_unlock(&s->mu);
    free(conns);
    free(notices);
    napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
    return;
  }
  size_t m = 0;
  for (conn_t *c = s->done_head; c; c = c->done_next) {
    conns[m] = c;
    notices[m++] = c->notices;
    c->notices = 0;
  }
  s->done_head = s->done_tail = NULL;
  s->signalled = 0;
  pthread_mutex_unlock(&s->mu);
  if (!n) return;
  /* [id, end, first, aToB, bToA, errno, preLeftA, preLeftB, readA, readB] per notice: END_CONNECTED and zeros for a
     CONNECT_SPLICE that connected (told before its end, which may follow in the same batch) */
  /* one ArrayBuffer per batch, filled in place: no JS number made or element set per field */
  napi_value buffer = NULL, arr = NULL, peeked = NULL, accepted = NULL;
  void *fields = NULL;
  if (napi_create_arraybuffer(env, n * NOTICES_PER_CONN * BATCH_FIELDS * sizeof(double), &fields, &buffer) != napi_ok) fields = NULL;
  double *out = fields;
  uint32_t i = 0, k = 0, np = 0, na = 0, told_accepts = 0;
  for (size_t q = 0; q < n; q++) {
    conn_t *c = conns[q];
    if (notices[q] & NOTICE_ACCEPTED) {
      /* [id, END_ACCEPTED, listenerId, fd, port, peeked, eof, errno]: the conn's handle and the client's address in the
         third argument; its first bytes too (as END_PEEKED's, in the second) when they came with it */
      int with_peek = (notices[q] & NOTICE_PEEKED) != 0;
      double age = (double)(now_ms() - c->accept_ms);
      const double told[BATCH_FIELDS] = {c->id, END_ACCEPTED, c->listen_id, c->fd[0], c->peer_port, with_peek, c->peek_eof, c->peek_err, age, 0};
      napi_value ext = NULL, address = NULL, buf = NULL;
      if (!accepted) napi_create_array(env, &accepted);
      if (with_peek && !peeked) napi_create_array(env, &peeked);
      if (accepted && napi_create_external(env, c, NULL, NULL, &ext) == napi_ok &&
          napi_create_string_latin1(env, c->peer ? c->peer : "", NAPI_AUTO_LENGTH, &address) == napi_ok &&
          (!with_peek || (peeked && napi_create_buffer_copy(env, c->peek_len, c->peek_len ? c->peek : "", NULL, &buf) == napi_ok))) {
        napi_set_element(env, accepted, na++, ext);
        napi_set_element(env, accepted, na++, address);
        if (with_peek) napi_set_element(env, peeked, np++, buf);
        push_fields(out, &i, told);
      }
      if (s->live++ == 0) napi_ref_threadsafe_function(env, s->tsfn);
      told_accepts++;
      free(c->peer);
      c->peer = NULL;
      if (with_peek) {
        notices[q] &= (uint8_t)~NOTICE_PEEKED;
        free(c->peek);
        c->peek = NULL;
      }
    }
    if (notices[q] & NOTICE_ACCEPT_FAILED) {
      const double failed[BATCH_FIELDS] = {c->id, END_ACCEPT_FAILED, 0, 0, 0, c->err, 0, 0, 0, 0};
      push_fields(out, &i, failed);
    }
    if (notices[q] & NOTICE_PEEKED) {
      /* the bytes go in the second argument, one Buffer per END_PEEKED, in order */
      const double told[BATCH_FIELDS] = {c->id, END_PEEKED, c->peek_eof, c->peek_len, 0, c->peek_err, 0, 0, 0, 0};
      napi_value buf = NULL;
      if (!peeked) napi_create_array(env, &peeked);
      if (peeked && napi_create_buffer_copy(env, c->peek_len, c->peek_len ? c->peek : "", NULL, &buf) == napi_ok) {
        napi_set_element(env, peeked, np++, buf);
        push_fields(out, &i, told);
      }
      free(c->peek);
      c->peek = NULL;
    }
    if (notices[q] & NOTICE_CONNECTED) {
      const double connected[BATCH_FIELDS] = {c->id, END_CONNECTED, -1, 0, 0, 0, 0, 0, 0, 0};
      push_fields(out, &i, connected);
    }
    if (!(notices[q] & NOTICE_END)) continue;
    const double ended[BATCH_FIELDS] = {c->id, c->end, c->first, (double)c->d[0].moved, (double)c->d[1].moved, c->err, c->pre_left[0], c->pre_left[1],
                                        (double)c->d[0].read, (double)c->d[1].read};
    push_fields(out, &i, ended);
    k++;
  }
  s->live -= k;
  if (s->live == 0) napi_unref_threadsafe_function(env, s->tsfn);
  napi_value undef;
  napi_get_undefined(env, &undef);
  if (out && napi_create_typedarray(env, napi_float64_array, i, buffer, 0, &arr) != napi_ok) arr = NULL;
  napi_value args[3] = {arr, peeked ? peeked : undef, accepted ? accepted : undef};
  if (arr) napi_call_function(env, undef, js_cb, 3, args, NULL);
  /* only now, JS having served, held or refused (closed) them: until then their descriptors were in no count of JS's */
  if (told_accepts) {
    __atomic_sub_fetch(&s->untold, told_accepts, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&s->accept_waiting, 0, __ATOMIC_SEQ_CST)) wake(s);
  }
  /* JS's references go only now (those of ended conns): the callback may have called abort() on any of them */
  for (size_t q = 0; q < n; q++)
    if (notices[q] & NOTICE_END) conn_unref(conns[q]);
  free(conns);
  free(notices);
}

static void free_unregistered(conn_t *c) {
  if (c->connect_cmd) { /* front() with a connect, never applied */
    close(c->next_fd);
    free(c->next_pre.pend);
  }
  for (int i = 0; i < 2; i++) {
    if (c->fd[i] >= 0 && !(i == 0 && c->a_borrowed)) close(c->fd[i]);
    free(c->d[i].pend);
  }
  free(c);
}

/*
 * Environment teardown: stop the thread, then close and free everything.
 * Registered by start() after the tsfn, so it runs before the tsfn's own
 * teardown (hooks run in reverse order): the thread is gone before the tsfn
 * it calls is.
 */
static void cleanup(void *arg) {
  state_t *s = arg;
  if (s->started) {
    s->started = 0;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
    wake(s);
    pthread_join(s->thread, NULL);
    /* order matters: each walk must only read conns not yet freed */
    conn_t *c = s->q_head;
    conn_t *unreg = NULL;
    while (c) { /* adopted but never seen by the thread: not on any other list */
      conn_t *nx = c->q_next;
      if (!c->registered && !c->closed) {
        c->q_next = unreg;
        unreg = c;
      }
      c = nx;
    }
    while (unreg) {
      c = unreg;
      unreg = c->q_next;
      free_unregistered(c);
    }
    while (s->dead) { /* closed this batch: the thread's reference */
      c = s->dead;
      s->dead = c->ready_next;
      conn_unref(c);
    }
    for (c = s->done_head; c;) { /* closed, end never delivered (a live conn with a connect notice is freed below) */
      conn_t *nx = c->done_next;
      if (c->closed) free(c);
      c = nx;
    }
    for (c = s->all; c;) { /* live */
      conn_t *nx = c->next;
      if (c->connect_cmd) close(c->next_fd);
      free(c->next_pre.pend);
      free(c->peek);
      free(c->peer);
      for (int i = 0; i < 2; i++) {
        if (!(i == 0 && c->a_borrowed)) close(c->fd[i]);
        if (c->d[i].pr >= 0) {
          close(c->d[i].pr);
          close(c->d[i].pw);
        }
        free(c->d[i].pend);
      }
      free(c);
      c = nx;
    }
    for (int i = 0; i < s->npool; i++) {
      close(s->pool[i][0]);
      close(s->pool[i][1]);
    }
    close(s->epfd);
    close(s->evfd);
    free(s->buf);
  }
}

static void finalize_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  state_t *s = data;
  cleanup(s); /* normally done already by the cleanup hook */
  pthread_mutex_destroy(&s->mu);
  free(s);
}

#define CHECK(call)                                       \
  do {                                                    \
    if ((call) != napi_ok) {                              \
      napi_throw_error(env, NULL, "N-API call failed: " #call); \
      return NULL;                                        \
    }                                                     \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, m, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, m, &e);
  napi_set_named_property(env, e, "errno", code);
  napi_throw(env, e);
  return NULL;
}

/* start(onBatch): creates the tsfn and the splice thread (once). */
static napi_value js_start(napi_env env, napi_callback_info info) {
  state_t *s;
  CHECK(napi_get_instance_data(env, (void **)&s));
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (s->started) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "start(callback)");
    return NULL;
  }
  struct rlimit nofile;
  uint64_t fds = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY ? (uint64_t)nofile.rlim_cur : 1u << 20;
  s->pipes_max = pipe_limit(fds);
  if (!s->buf) s->buf = malloc(FALLBACK_CHUNK);
  if (!s->buf) return throw_errno(env, "malloc", ENOMEM);
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) return throw_errno(env, "epoll_create1", errno);
  s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->evfd < 0) {
    int e = errno;
    close(s->epfd);
    s->epfd = -1;
    return throw_errno(env, "eventfd", e);
  }
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  napi_value name;
  int r = epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) < 0 ? errno : 0;
  if (r == 0 && (napi_create_string_utf8(env, "sniffmux.nativeSplice", NAPI_AUTO_LENGTH, &name) != napi_ok ||
                 napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, s, call_js, &s->tsfn) != napi_ok)) {
    r = EINVAL;
  } else if (r == 0) {
    napi_unref_threadsafe_function(env, s->tsfn);
    /* the thread takes no signals (SIGPIPE included) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&s->thread, NULL, thread_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
  }
  if (r != 0) { /* nothing started: a later start() may try again */
    close(s->epfd);
    close(s->evfd);
    s->epfd = s->evfd = -1;
    return throw_errno(env, "start", r);
  }
  s->started = 1;
  CHECK(napi_add_env_cleanup_hook(env, cleanup, s));
  return NULL;
}

static int get_fd(napi_env env, napi_value v, int *out) {
  return napi_get_value_int32(env, v, out) == napi_ok && *out >= 0;
}

static int copy_pre(napi_env env, napi_value v, dir_t *x) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_null || t == napi_undefined) return 0;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return -1;
  if (len == 0) return 0;
  if (len > UINT32_MAX) return -1;
  x->pend = malloc(len);
  if (!x->pend) return -1;
  memcpy(x->pend, data, len);
  x->pend_len = (uint32_t)len;
  x->unsent = (uint32_t)len;
  return 0;
}

/* The instance's state once start() has run, else NULL with an error thrown. */
static state_t *started_state(napi_env env) {
  state_t *s = NULL;
  if (napi_get_instance_data(env, (void **)&s) != napi_ok || !s) {
    napi_throw_error(env, NULL, "N-API call failed: napi_get_instance_data");
    return NULL;
  }
  if (!s->started) {
    napi_throw_error(env, NULL, "start() first");
    return NULL;
  }
  return s;
}

/* Hands a new conn (adopted or connecting) to the thread. */
/* Puts c on the command queue unless it is there already (the thread then looks at all it was asked); under mu. */
static void queue_locked(state_t *s, conn_t *c) {
  if (c->queued) return;
  c->queued = 1;
  c->q_next = NULL;
  if (s->q_tail) s->q_tail->q_next = c; else s->q_head = c;
  s->q_tail = c;
}

static void enqueue_new(napi_env env, state_t *s, conn_t *c) {
  if (s->live++ == 0) napi_ref_threadsafe_function(env, s->tsfn);
  pthread_mutex_lock(&s->mu);
  queue_locked(s, c);
  pthread_mutex_unlock(&s->mu);
  wake(s);
}

/* A new front conn, made ready by the caller, becomes JS's handle and goes to the thread; if it cannot, it is freed
   (its own descriptors closed, JS's left alone) and NULL comes back, with an error thrown. */
static napi_value hand_over(napi_env env, state_t *s, conn_t *c) {
  napi_value ext;
  if (napi_create_external(env, c, NULL, NULL, &ext) != napi_ok) {
    free_unregistered(c);
    napi_throw_error(env, NULL, "napi_create_external failed");
    return NULL;
  }
  enqueue_new(env, s, c);
  return ext;
}

/* A connect's host (numeric: see open_connect) and port (1..65535) from two arguments; 0 when either is not. */
static int get_host_port(napi_env env, napi_value h, napi_value p, char *host, size_t size, uint32_t *port) {
  size_t len = 0;
  return napi_get_value_string_utf8(env, h, host, size, &len) == napi_ok && napi_get_value_uint32(env, p, port) == napi_ok &&
         *port > 0 && *port <= 65535;
}

/* adopt(fdA, fdB, preA, preB, flags, idleMs, id) -> external */
static napi_value js_adopt(napi_env env, napi_callback_info info) {
  state_t *s = started_state(env);
  if (!s) return NULL;
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fa, fb;
  uint32_t flags, idle;
  double id;
  if (argc < 7 || !get_fd(env, argv[0], &fa) || !get_fd(env, argv[1], &fb) || fa == fb ||
      napi_get_value_uint32(env, argv[4], &flags) != napi_ok || napi_get_value_uint32(env, argv[5], &idle) != napi_ok ||
      napi_get_value_double(env, argv[6], &id) != napi_ok) {
    napi_throw_type_error(env, NULL, "adopt(fdA, fdB, preA, preB, flags, idleMs, id)");
    return NULL;
  }
  conn_t *c = new_conn(id);
  if (!c) return throw_errno(env, "calloc", ENOMEM);
  if (copy_pre(env, argv[2], &c->d[0]) < 0 || copy_pre(env, argv[3], &c->d[1]) < 0) {
    free(c->d[0].pend);
    free(c->d[1].pend);
    free(c);
    napi_throw_type_error(env, NULL, "adopt: preA/preB must be a Buffer or null");
    return NULL;
  }
  /* F_B_OWNED: fdB is a connection js_connect made, no other owner to dup it from (on a throw JS still owns it) */
  int owned = (flags & F_B_OWNED) != 0;
  c->b_owned = (uint8_t)owned;
  c->fd[0] = fcntl(fa, F_DUPFD_CLOEXEC, 0);
  c->fd[1] = c->fd[0] < 0 ? -1 : owned ? fb : fcntl(fb, F_DUPFD_CLOEXEC, 0);
  if (c->fd[1] < 0) {
    int e = errno;
    if (c->fd[0] >= 0) close(c->fd[0]);
    free(c->d[0].pend);
    free(c->d[1].pend);
    free(c);
    return throw_errno(env, "dup", e);
  }
  for (int i = 0; i < 2; i++) {
    int fl = fcntl(c->fd[i], F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(c->fd[i], F_SETFL, fl | O_NONBLOCK);
  }
  c->idle_ms = idle;
  c->pre_left[0] = c->d[0].pend_len;
  c->pre_left[1] = c->d[1].pend_len;
  if (flags & F_A_EOF) { c->d[0].src_eof = 1; c->first = 0; }
  if (flags & F_B_EOF) { c->d[1].src_eof = 1; if (c->first < 0) c->first = 1; }
  if (flags & F_A_WR_SHUT) c->d[1].dst_shut = 1;
  if (flags & F_B_WR_SHUT) c->d[0].dst_shut = 1;
  /* rd/wr stay 0: EPOLL_CTL_ADD reports what is ready already (edge-triggered
     included), so an idle socket never costs a pipe acquire/release */
  napi_value ext;
  if (napi_create_external(env, c, NULL, NULL, &ext) != napi_ok) {
    close(c->fd[0]);
    if (!owned) close(c->fd[1]);
    free(c->d[0].pend);
    free(c->d[1].pend);
    free(c);
    napi_throw_error(env, NULL, "napi_create_external failed");
    return NULL;
  }
  enqueue_new(env, s, c);
  return ext;
}

/*
 * A non-blocking TCP connect to a numeric IPv4/IPv6 address, TCP_NODELAY as
 * the JavaScript connect: 0 with *fd set (connected or in progress), else
 * errno with *fd -1, or -2 when host is not a numeric address (EINVAL).
 */
static int open_connect(const char *host, uint32_t port, int *fd) {
  struct sockaddr_storage sa;
  socklen_t salen;
  memset(&sa, 0, sizeof sa);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
  *fd = -1;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    salen = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    salen = sizeof *v6;
  } else {
    *fd = -2;
    return EINVAL;
  }
  int s = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s, (struct sockaddr *)&sa, salen) < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(s);
    return e;
  }
  *fd = s;
  return 0;
}

/* The throw for a connect that could not start: open_connect's errno, its *fd (-2: not a numeric address). */
static napi_value throw_connect(napi_env env, int fd, int e) {
  return throw_errno(env, fd == -2 ? "connect: not a numeric address" : "connect", e);
}

/*
 * connect(host, port, id) -> [fd, external]: a non-blocking TCP connect
 * (TCP_NODELAY, as the JavaScript connect) whose end the thread reports like
 * a splice's: END_CONNECTED (the fd is JS's) or END_CONNECT_FAILED with
 * errno (the fd is closed). abort(external) cancels it (END_ABORTED, fd
 * closed) unless it has finished already. host is a numeric IPv4 or IPv6
 * address; anything else, and a connect that fails at once, throws with errno.
 *
 * connect(host, port, id, fdA, preA, flags, idleMs): the same connect, and
 * the splice of a dup of fdA with it as soon as it is established, with no
 * round trip to JS in between (CONNECT_SPLICE). The thread tells
 * END_CONNECTED (then, later, the splice's end, as for adopt) or, when it
 * fails, END_CONNECT_FAILED / END_ABORTED with both of its descriptors closed
 * and fdA untouched. abort(external, true) cancels only a connect still in
 * flight.
 */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  state_t *s = started_state(env);
  if (!s) return NULL;
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char host[64];
  uint32_t port;
  double id;
  if (argc < 3 || !get_host_port(env, argv[0], argv[1], host, sizeof host, &port) || napi_get_value_double(env, argv[2], &id) != napi_ok) {
    napi_throw_type_error(env, NULL, "connect(host, port, id)");
    return NULL;
  }
  int fa = -1;
  uint32_t flags = 0, idle = 0;
  dir_t pre;
  memset(&pre, 0, sizeof pre);
  if (argc >= 7 && (!get_fd(env, argv[3], &fa) || napi_get_value_uint32(env, argv[5], &flags) != napi_ok ||
                    napi_get_value_uint32(env, argv[6], &idle) != napi_ok || copy_pre(env, argv[4], &pre) < 0)) {
    free(pre.pend);
    napi_throw_type_error(env, NULL, "connect(host, port, id, fdA, preA, flags, idleMs)");
    return NULL;
  }
  int dupA = fa < 0 ? -1 : fcntl(fa, F_DUPFD_CLOEXEC, 0);
  if (fa >= 0 && dupA < 0) {
    int e = errno;
    free(pre.pend);
    return throw_errno(env, "dup", e);
  }
  int fd = -1;
  int e = open_connect(host, port, &fd);
  conn_t *c = e ? NULL : new_conn(id);
  if (!c) {
    if (!e) e = ENOMEM;
    if (fd >= 0) close(fd);
    if (dupA >= 0) close(dupA);
    free(pre.pend);
    return throw_connect(env, fd, e);
  }
  c->fd[0] = dupA;
  c->fd[1] = fd;
  c->b_owned = 1;
  c->connecting = dupA < 0 ? CONNECT_ONLY : CONNECT_SPLICE;
  if (dupA >= 0) {
    set_pre_a(c, &pre);
    c->idle_after = idle;
    if (flags & F_A_EOF) { c->d[0].src_eof = 1; c->first = 0; }
    if (flags & F_A_WR_SHUT) c->d[1].dst_shut = 1;
  }
  napi_value ext, arr, v;
  if (napi_create_external(env, c, NULL, NULL, &ext) != napi_ok || napi_create_array_with_length(env, 2, &arr) != napi_ok ||
      napi_create_int32(env, fd, &v) != napi_ok || napi_set_element(env, arr, 0, v) != napi_ok ||
      napi_set_element(env, arr, 1, ext) != napi_ok) {
    close(fd);
    if (dupA >= 0) close(dupA);
    free(c->d[0].pend);
    free(c);
    napi_throw_error(env, NULL, "connect: N-API call failed");
    return NULL;
  }
  enqueue_new(env, s, c);
  return arr;
}

/* The conn of a call's one argument (the external adopt() gave), or NULL with a TypeError thrown. */
static conn_t *conn_arg(napi_env env, napi_callback_info info, const char *usage) {
  size_t argc = 1;
  napi_value argv[1];
  conn_t *c = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], (void **)&c) != napi_ok || !c) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return c;
}

/* A connect's numeric host, port, pre-buffer and idle timeout, from four arguments (front_connect's and front's); 0 when any is bad. */
static int get_connect_args(napi_env env, napi_value *argv, char *host, size_t size, uint32_t *port, dir_t *pre, uint32_t *idle) {
  memset(pre, 0, sizeof *pre);
  if (!get_host_port(env, argv[0], argv[1], host, size, port) || napi_get_value_uint32(env, argv[3], idle) != napi_ok ||
      copy_pre(env, argv[2], pre) < 0) {
    free(pre->pend);
    memset(pre, 0, sizeof *pre);
    return 0;
  }
  return 1;
}

/* Asks the thread to give the front conn c the connecting socket fd as its server side (apply_connect), pre first; pre is taken. */
static void set_connect(conn_t *c, int fd, dir_t *pre, uint32_t idle) {
  c->next_fd = fd;
  c->next_pre = *pre;
  memset(pre, 0, sizeof *pre);
  c->idle_after = idle;
  c->connect_cmd = 1;
}

/*
 * front(fd, id, peekMax[, host, port, preA, idleMs]) -> external: a socket JS
 * has just accepted (fd stays JS's: never read, written or closed here until
 * JS connects it) waits in the thread for its first bytes, which are told to
 * JS unread (END_PEEKED with eof and length; the bytes in the batch's second
 * argument), at most peekMax. Then JS either connects it (front_connect) or
 * takes it back (abort: the thread forgets the descriptor, END_ABORTED).
 * Ended, it is JS's to close. With the connect's arguments, JS has peeked
 * and decided already (peek()): the conn starts connecting, as
 * front_connect, and nothing is peeked here; the connect failing at once
 * throws as front_connect's does, and then there is no conn.
 */
static napi_value js_front(napi_env env, napi_callback_info info) {
  state_t *s = started_state(env);
  if (!s) return NULL;
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  double id;
  uint32_t peek_max;
  char host[64];
  uint32_t port = 0, idle = 0;
  dir_t pre;
  memset(&pre, 0, sizeof pre);
  int connect_now = argc >= 7;
  if (argc < 3 || !get_fd(env, argv[0], &fd) || napi_get_value_double(env, argv[1], &id) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &peek_max) != napi_ok || peek_max == 0 ||
      (connect_now && !get_connect_args(env, argv + 3, host, sizeof host, &port, &pre, &idle))) {
    napi_throw_type_error(env, NULL, "front(fd, id, peekMax[, host, port, preA, idleMs])");
    return NULL;
  }
  int server_fd = -1;
  if (connect_now) {
    int e = open_connect(host, port, &server_fd);
    if (e) {
      free(pre.pend);
      return throw_connect(env, server_fd, e);
    }
  }
  conn_t *c = new_conn(id);
  if (!c) {
    if (server_fd >= 0) close(server_fd);
    free(pre.pend);
    return throw_errno(env, "calloc", ENOMEM);
  }
  c->fd[0] = fd;
  c->a_borrowed = 1;
  c->peeking = connect_now ? PEEK_TOLD : PEEK_WAITING;
  c->peek_max = peek_max;
  /* registered and then connected in one pass of drain_commands */
  if (connect_now) set_connect(c, server_fd, &pre, idle);
  return hand_over(env, s, c);
}

/*
 * front_connect(external, host, port, preA, idleMs): connects (numeric host,
 * as connect()) and splices the front conn with it as soon as it is
 * established, preA first (a PROXY header), then the client's bytes, which
 * are still unread. Told as a CONNECT_SPLICE is. Throws with errno when the
 * connect fails at once (the conn still waits: abort it or connect again).
 */
static napi_value js_front_connect(napi_env env, napi_callback_info info) {
  state_t *s = started_state(env);
  if (!s) return NULL;
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  conn_t *c = NULL;
  char host[64];
  uint32_t port, idle;
  dir_t pre;
  if (argc < 5 || napi_get_value_external(env, argv[0], (void **)&c) != napi_ok || !c || !c->a_borrowed ||
      !get_connect_args(env, argv + 1, host, sizeof host, &port, &pre, &idle)) {
    napi_throw_type_error(env, NULL, "front_connect(handle, host, port, preA, idleMs)");
    return NULL;
  }
  int fd = -1;
  int e = open_connect(host, port, &fd);
  if (e) {
    free(pre.pend);
    return throw_connect(env, fd, e);
  }
  pthread_mutex_lock(&s->mu);
  set_connect(c, fd, &pre, idle);
  queue_locked(s, c);
  pthread_mutex_unlock(&s->mu);
  wake(s);
  return NULL;
}

/*
 * answer(fd, id, reply, idleMs) -> external: a just-accepted socket JS still
 * holds (as front) is answered here, with no server: reply is sent, then a
 * FIN, and whatever the client sends is read and dropped until its own FIN,
 * so that closing never turns into a reset that loses the reply (a Flash
 * policy request is answered so). Told as a splice's end, the reply counted
 * as bytes to a; idleMs as a splice's (a side's silence).
 */
static napi_value js_answer(napi_env env, napi_callback_info info) {
  state_t *s = started_state(env);
  if (!s) return NULL;
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  double id;
  uint32_t idle;
  conn_t *c = NULL;
  if (argc < 4 || !get_fd(env, argv[0], &fd) || napi_get_value_double(env, argv[1], &id) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &idle) != napi_ok || !(c = new_conn(id)) || copy_pre(env, argv[2], &c->d[1]) < 0) {
    free(c);
    napi_throw_type_error(env, NULL, "answer(fd, id, reply, idleMs)");
    return NULL;
  }
  c->fd[0] = fd;
  c->a_borrowed = 1;
  c->idle_ms = idle;
  c->pre_left[1] = c->d[1].pend_len;
  c->d[1].src_eof = 1; /* the reply is all there is to send */
  c->first = 1;
  c->d[0].dst_shut = 1; /* the client's bytes go nowhere */
  return hand_over(env, s, c);
}

/*
 * peek(fd, max) -> Buffer | null: the first bytes (at most max) a socket has
 * received, read without taking them (MSG_PEEK); null when nothing has come
 * yet, an empty Buffer at end of file; throws with errno when the socket has
 * failed. On JS's thread, for a socket just accepted: its bytes are often
 * there already, and then the thread need not watch for them.
 */
static napi_value js_peek(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint32_t max;
  if (argc < 2 || !get_fd(env, argv[0], &fd) || napi_get_value_uint32(env, argv[1], &max) != napi_ok || max == 0) {
    napi_throw_type_error(env, NULL, "peek(fd, max)");
    return NULL;
  }
  static char *buf = NULL; /* JS's thread only */
  static uint32_t buf_size = 0;
  if (max > buf_size) {
    char *grown = realloc(buf, max);
    if (!grown) return throw_errno(env, "realloc", ENOMEM);
    buf = grown;
    buf_size = max;
  }
  ssize_t n;
  do n = recv(fd, buf, max, MSG_PEEK | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  napi_value out;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      CHECK(napi_get_null(env, &out));
      return out;
    }
    return throw_errno(env, "recv", errno);
  }
  CHECK(napi_create_buffer_copy(env, (size_t)n, buf, NULL, &out));
  return out;
}

/* abort(external): JS guarantees it is not called after the completion was delivered. */
static napi_value js_abort(napi_env env, napi_callback_info info) {
  state_t *s;
  CHECK(napi_get_instance_data(env, (void **)&s));
  conn_t *c = conn_arg(env, info, "abort(handle[, ifConnecting])");
  if (!c) return NULL;
  size_t argc = 2;
  napi_value argv[2];
  bool if_connecting = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 2) napi_get_value_bool(env, argv[1], &if_connecting);
  pthread_mutex_lock(&s->mu);
  int enqueue = 0;
  if (c->abort_req == 0) {
    c->abort_req = if_connecting ? ABORT_IF_CONNECTING : ABORT_ANY;
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    queue_locked(s, c);
    enqueue = 1;
  }
  pthread_mutex_unlock(&s->mu);
  if (enqueue) wake(s);
  return NULL;
}

/*
 * listen(fd, id, peekMax) -> external: the thread accepts the clients of a
 * listening socket JS bound (a dup of fd: JS closes its own, so that only
 * the thread accepts), each told as END_ACCEPTED, a front conn of its own
 * (see take_client). Out of descriptors it tells END_ACCEPT_FAILED with
 * errno (the listener goes on, trying again). abort(external) closes it:
 * its end is told as any conn's, END_ABORTED. While it listens, it keeps the
 * event loop alive as a Node server does.
 */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  state_t *s = started_state(env);
  if (!s) return NULL;
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  double id;
  uint32_t peek_max;
  if (argc < 3 || !get_fd(env, argv[0], &fd) || napi_get_value_double(env, argv[1], &id) != napi_ok || id < 1 || id > UINT32_MAX ||
      napi_get_value_uint32(env, argv[2], &peek_max) != napi_ok || peek_max == 0) {
    napi_throw_type_error(env, NULL, "listen(fd, id, peekMax)");
    return NULL;
  }
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return throw_errno(env, "dup", errno);
  int fl = fcntl(own, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(own, F_SETFL, fl | O_NONBLOCK);
  conn_t *c = new_conn(id);
  if (!c) {
    close(own);
    return throw_errno(env, "calloc", ENOMEM);
  }
  c->fd[0] = own;
  c->listening = 1;
  c->peek_max = peek_max;
  /* once here rather than once per client (the clients already in the backlog do not have it: take_client sets it) */
  int one = 1;
  if (setsockopt(own, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) c->listen_nodelay = NODELAY_SET;
  return hand_over(env, s, c);
}

/*
 * release(external): JS takes a front conn back (as abort, told as
 * END_ABORTED, the descriptor left open). One the thread accepted leaves the
 * thread's epoll set here and now, before JS can close its descriptor: the
 * thread may accept another client with the same number before it sees the
 * abort.
 */
static napi_value js_release(napi_env env, napi_callback_info info) {
  state_t *s;
  CHECK(napi_get_instance_data(env, (void **)&s));
  conn_t *c = conn_arg(env, info, "release(handle)");
  if (!c) return NULL;
  if (c->accepted && !__atomic_exchange_n(&c->a_released, 1, __ATOMIC_ACQ_REL)) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd[0], NULL);
  return js_abort(env, info);
}

/*
 * counters(external) -> [readA, readB, aToB, bToA, unsentAToB, unsentBToA, inPipeAToB, inPipeBToA]:
 * what the loop has read from each side and delivered each way so far, and
 * what it holds now (in its own buffers, in its pipes). JS guarantees, as for
 * abort(), that the completion was not delivered yet (the conn is not freed).
 */
static napi_value js_counters(napi_env env, napi_callback_info info) {
  conn_t *c = conn_arg(env, info, "counters(handle)");
  if (!c) return NULL;
  const double vals[8] = {
    (double)LOAD(c->d[0].read), (double)LOAD(c->d[1].read), (double)LOAD(c->d[0].moved), (double)LOAD(c->d[1].moved),
    LOAD(c->d[0].unsent),       LOAD(c->d[1].unsent),       LOAD(c->d[0].in_pipe),       LOAD(c->d[1].in_pipe),
  };
  napi_value arr, v;
  CHECK(napi_create_array_with_length(env, 8, &arr));
  for (uint32_t i = 0; i < 8; i++) {
    CHECK(napi_create_double(env, vals[i], &v));
    CHECK(napi_set_element(env, arr, i, v));
  }
  return arr;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  (void)info;
  state_t *s;
  CHECK(napi_get_instance_data(env, (void **)&s));
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
  const struct { const char *k; double v; } f[] = {
    {"live", (double)s->live},
    {"pipesInUse", (double)__atomic_load_n(&s->pipes_in_use, __ATOMIC_RELAXED)},
    {"pipesPooled", (double)__atomic_load_n(&s->npool, __ATOMIC_RELAXED)},
    {"pipesCreated", (double)__atomic_load_n(&s->pipes_created, __ATOMIC_RELAXED)},
    {"fallbackChunks", (double)__atomic_load_n(&s->fallback_chunks, __ATOMIC_RELAXED)},
    {"smallChunks", (double)__atomic_load_n(&s->small_chunks, __ATOMIC_RELAXED)},
    {"pipesRefused", (double)__atomic_load_n(&s->pipes_refused, __ATOMIC_RELAXED)},
    {"pipesMax", (double)s->pipes_max},
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    CHECK(napi_create_double(env, f[i].v, &v));
    CHECK(napi_set_named_property(env, o, f[i].k, v));
  }
  return o;
}

/* pipeLimit(nofile): the pipes the thread allows itself under that open-file limit (pipe_limit), for JS's budget. */
static napi_value js_pipe_limit(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  double fds = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_double(env, argv[0], &fds) != napi_ok || !(fds >= 0)) {
    napi_throw_type_error(env, NULL, "pipeLimit(nofile)");
    return NULL;
  }
  CHECK(napi_create_uint32(env, pipe_limit(fds > 1e15 ? (uint64_t)1e15 : (uint64_t)fds), &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  state_t *s = calloc(1, sizeof *s);
  if (!s) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  s->env = env;
  s->epfd = s->evfd = -1;
  pthread_mutex_init(&s->mu, NULL);
  CHECK(napi_set_instance_data(env, s, finalize_state, NULL));
  napi_value fn, size;
  CHECK(napi_create_function(env, "start", NAPI_AUTO_LENGTH, js_start, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "start", fn));
  CHECK(napi_create_function(env, "adopt", NAPI_AUTO_LENGTH, js_adopt, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "adopt", fn));
  CHECK(napi_create_function(env, "connect", NAPI_AUTO_LENGTH, js_connect, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "connect", fn));
  CHECK(napi_create_function(env, "front", NAPI_AUTO_LENGTH, js_front, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "front", fn));
  CHECK(napi_create_function(env, "frontConnect", NAPI_AUTO_LENGTH, js_front_connect, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "frontConnect", fn));
  CHECK(napi_create_function(env, "answer", NAPI_AUTO_LENGTH, js_answer, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "answer", fn));
  CHECK(napi_create_function(env, "peek", NAPI_AUTO_LENGTH, js_peek, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "peek", fn));
  CHECK(napi_create_function(env, "listen", NAPI_AUTO_LENGTH, js_listen, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "listen", fn));
  CHECK(napi_create_function(env, "release", NAPI_AUTO_LENGTH, js_release, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "release", fn));
  CHECK(napi_create_function(env, "abort", NAPI_AUTO_LENGTH, js_abort, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "abort", fn));
  CHECK(napi_create_function(env, "counters", NAPI_AUTO_LENGTH, js_counters, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "counters", fn));
  CHECK(napi_create_function(env, "stats", NAPI_AUTO_LENGTH, js_stats, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "stats", fn));
  CHECK(napi_create_uint32(env, (uint32_t)sizeof(conn_t), &size));
  CHECK(napi_set_named_property(env, exports, "connSize", size));
  CHECK(napi_create_uint32(env, ACCEPT_WINDOW, &size));
  CHECK(napi_set_named_property(env, exports, "acceptWindow", size));
  CHECK(napi_create_function(env, "pipeLimit", NAPI_AUTO_LENGTH, js_pipe_limit, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "pipeLimit", fn));
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
