/**
 * The bridge's own transport for a dedicated server process (`ioasid serve -- CMD`): one blocking
 * poll(2) over the listening socket, the connections and the command's pidfd, with read(2) and
 * write(2) straight through libc. Node's streams cost tens of microseconds per message; this
 * costs the syscalls. The event loop does not run meanwhile, so the loop returns once the command
 * has exited and every program process it started has disconnected.
 *
 * A program with a channel (protocol.ts) writes its requests there. Before it sleeps in poll, the
 * loop waits for them awake for SPIN_MS, watching the channels' request counts and yielding the
 * CPU: a program that calls again soon is served without waking a sleeping process, which costs
 * this kind of VM 5-20 µs. Asleep, it tells the programs, which then send WAKE on the socket.
 */
import { ERRNO } from '../ioasid/errors.js';
import { POLLERR, POLLHUP, POLLIN } from '../backends/types.js';
import { libc } from '../backends/linux/libc.js';
import type { BridgeServer, Connection } from './server.js';
import { peerCred } from './server.js';
import { SPIN_MS } from './protocol.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
/** While serving requests that arrived awake, still poll the sockets this often (ms): accept, hangups, programs without a channel. */
const POLL_EVERY_MS = 1;
/** sizeof(struct sockaddr_un). */
const SOCKADDR_UN = 110;
const READ_SIZE = 1 << 16;

interface Client {
  fd: number;
  conn: Connection;
}

/** Listen on `server.socketPath` with a socket of our own (not libuv's). */
export function listenBlocking(server: BridgeServer): number {
  const c = libc();
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`bridge: socket: errno ${c.errno()}`);
  const addr = new Uint8Array(SOCKADDR_UN);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  const path = new TextEncoder().encode(server.socketPath);
  if (path.length >= SOCKADDR_UN - 2) throw new Error(`bridge: socket path too long: ${server.socketPath}`);
  addr.set(path, 2);
  if (c.bind(fd, addr, 2 + path.length + 1) !== 0 || c.listen(fd, 128) !== 0) {
    const e = c.errno();
    c.close(fd);
    throw new Error(`bridge: cannot listen on ${server.socketPath}: errno ${e}`);
  }
  return fd;
}

/** Serve until the process behind `pidfd` has exited and no program is connected. */
export function serveBlocking(server: BridgeServer, listenFd: number, pidfd: number): void {
  const c = libc();
  const clients: Client[] = [];
  const buf = new Uint8Array(READ_SIZE);
  let exited = false;
  // the pollfd array, rebuilt only when the set of descriptors changes
  let pfds = new Uint8Array(0);
  let v = new DataView(pfds.buffer);
  let dirty = true;
  // after a failed accept (EMFILE), stop polling the listening socket until a client goes
  let acceptPaused = false;
  const drop = (cl: Client): void => {
    const i = clients.indexOf(cl);
    if (i < 0) return;
    clients.splice(i, 1);
    dirty = true;
    acceptPaused = false;
    c.close(cl.fd);
    server.disconnect(cl.conn);
  };
  const serve = (cl: Client, re: number): void => {
    const got = re & POLLIN ? c.read(cl.fd, buf, buf.length) : 0;
    if (got < 0 && (c.errno() === ERRNO.EINTR || c.errno() === ERRNO.EAGAIN)) return;
    if (got <= 0) return drop(cl);
    const { replies, close } = server.feed(cl.conn, buf.subarray(0, got));
    for (const r of replies) if (!writeAll(cl.fd, r)) return drop(cl);
    if (close) return drop(cl);
    // a WAKE: the request is in the channel
    if (cl.conn.channel) serveChannel(cl);
  };
  const serveChannel = (cl: Client): void => {
    if (!server.serveChannel(cl.conn)) drop(cl);
  };
  // the first client with a request pending in its channel within SPIN_MS, or undefined
  const awake = (): Client | undefined => {
    const end = performance.now() + SPIN_MS;
    do {
      for (const cl of clients) if (cl.conn.channel?.pending()) return cl;
      c.sched_yield();
    } while (performance.now() < end);
    return undefined;
  };
  // tell the programs the loop sleeps (or has woken); going to sleep, the first with a request meanwhile
  const sleeping = (asleep: boolean): Client | undefined => {
    let first: Client | undefined;
    for (const cl of clients) if (cl.conn.channel?.sleeping(asleep)) first ??= cl;
    return first;
  };
  let lastPoll = performance.now();
  while (!exited || clients.length) {
    const channels = clients.some((cl) => cl.conn.channel);
    const next = channels ? awake() : undefined;
    if (next) {
      serveChannel(next);
      if (performance.now() - lastPoll < POLL_EVERY_MS) continue;
    } else if (channels) {
      const came = sleeping(true);
      if (came) {
        sleeping(false);
        serveChannel(came);
        continue;
      }
    }
    const n = 2 + clients.length;
    if (dirty) {
      pfds = new Uint8Array(n * 8);
      v = new DataView(pfds.buffer);
      for (let i = 0; i < n; i++) {
        v.setInt32(i * 8, i === 0 ? (acceptPaused ? -1 : listenFd) : i === 1 ? (exited ? -1 : pidfd) : clients[i - 2]!.fd, true);
        v.setInt16(i * 8 + 4, POLLIN, true);
      }
      dirty = false;
    }
    const ready = c.poll(pfds, n, next ? 0 : -1);
    lastPoll = performance.now();
    if (channels && !next) sleeping(false);
    if (ready < 0) {
      if (c.errno() === ERRNO.EINTR) continue;
      throw new Error(`bridge: poll: errno ${c.errno()}`);
    }
    if (v.getInt16(14, true)) {
      exited = true;
      dirty = true;
    }
    // newest last: serving may drop clients, so walk a fixed list of those polled
    const polled = dirty ? clients.slice() : clients;
    for (let k = polled.length - 1; k >= 0; k--) {
      const re = v.getInt16((2 + k) * 8 + 6, true);
      if (re) serve(polled[k]!, re & (POLLIN | POLLERR | POLLHUP));
    }
    if (v.getInt16(6, true) & POLLIN) {
      const fd = c.accept4(listenFd, null, null, SOCK_CLOEXEC);
      if (fd < 0 && c.errno() !== ERRNO.EINTR && c.errno() !== ERRNO.EAGAIN) {
        acceptPaused = true;
        dirty = true;
      }
      if (fd >= 0) {
        const cl: Client = { fd, conn: null as unknown as Connection };
        const conn = server.connect(peerCred(fd), () => drop(cl));
        if (conn) {
          cl.conn = conn;
          clients.push(cl);
          dirty = true;
        } else {
          c.close(fd);
        }
      }
    }
  }
}

function writeAll(fd: number, bytes: Uint8Array): boolean {
  const c = libc();
  let done = 0;
  while (done < bytes.length) {
    const part = done ? bytes.subarray(done) : bytes;
    const n = c.write(fd, part, part.length);
    if (n < 0 && c.errno() === ERRNO.EINTR) continue;
    if (n <= 0) return false;
    done += n;
  }
  return true;
}
