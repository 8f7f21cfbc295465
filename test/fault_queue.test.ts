/**
 * Fault queues beyond the selftests' happy path, backend-agnostic (the kernel's eventq.c rules):
 * read sizes, cookies, bad responses, the fd holding the object, automatic INVALID answers when
 * the attachment goes, and the async iterator.
 */
import { describe, expect, it } from 'vitest';
import { BACKEND, expectErrno, iopfSetup, useIommufd } from './helpers.js';

describe(`fault queues [${BACKEND}]`, () => {
  const f = useIommufd();

  const setup = () => iopfSetup(f, 7);

  it('an empty queue reads nothing; each read takes whole groups; cookies start at 1 and are reused once answered', () => {
    const { dev, fq } = setup();
    expect(fq.read()).toEqual([]);
    f.test.triggerIopf(dev.idevId, 7, { grpid: 1, addr: 0x1000n });
    f.test.triggerIopf(dev.idevId, 7, { grpid: 2, addr: 0x2000n });
    expect(fq.ready()).toBe(true);
    const got = fq.read();
    expect(got.map((g) => [g.grpid, g.addr, g.cookie])).toEqual([[1, 0x1000n, 1], [2, 0x2000n, 2]]);
    expect(fq.ready()).toBe(false);
    fq.respond(1);
    f.test.triggerIopf(dev.idevId, 7, { grpid: 3 });
    expect(fq.read().map((g) => g.cookie)).toEqual([1]);
  });

  it('read: a size that is not a whole number of records is ESPIPE; too small for the first group EINVAL', () => {
    const { dev, fq } = setup();
    f.test.triggerIopf(dev.idevId, 7);
    const b = f.ctx.binding;
    expectErrno(() => b.read(fq.fd, new Uint8Array(39)), 'ESPIPE');
    expectErrno(() => b.read(fq.fd, new Uint8Array(0)), 'EINVAL');
    expect(fq.read()).toHaveLength(1); // still queued after the refusals
  });

  it('respond: an unknown cookie or a bad code is EINVAL; a cookie cannot be answered twice', () => {
    const { dev, fq } = setup();
    f.test.triggerIopf(dev.idevId, 7);
    const [g] = fq.read();
    expectErrno(() => fq.respond(g!.cookie + 5), 'EINVAL');
    expectErrno(() => fq.respond(g!.cookie, 7), 'EINVAL');
    fq.respond(g!.cookie, 'invalid');
    expectErrno(() => fq.respond(g!.cookie), 'EINVAL');
    expectErrno(() => f.ctx.binding.write(fq.fd, new Uint8Array(5)), 'ESPIPE');
  });

  it('the fd holds the queue: DESTROY is EBUSY while it is open, and while a HWPT uses it', () => {
    const { dev, fq, iopf } = setup();
    expectErrno(() => f.ctx.destroy(fq.id), 'EBUSY');
    f.test.pasidDetach(dev.stdevId, 7);
    iopf.destroy();
    expectErrno(() => f.ctx.destroy(fq.id), 'EBUSY');
    fq.close();
    f.ctx.destroy(fq.id);
  });

  it('faults pending on an attachment are answered when it is detached: a later response finds no cookie', () => {
    const { dev, fq } = setup();
    f.test.triggerIopf(dev.idevId, 7);
    f.test.triggerIopf(dev.idevId, 7, { grpid: 9 });
    const [first] = fq.read().slice(0, 1);
    f.test.pasidDetach(dev.stdevId, 7);
    expect(fq.read()).toEqual([]);
    expectErrno(() => fq.respond(first!.cookie), 'EINVAL');
  });

  it('a PASID with no IOPF-capable HWPT queues nothing', () => {
    const { dev, fq } = setup();
    f.test.triggerIopf(dev.idevId, 8);
    expect(fq.read()).toEqual([]);
  });

  it('the async iterator yields batches as they arrive', async () => {
    const { dev, fq } = setup();
    setTimeout(() => f.test.triggerIopf(dev.idevId, 7, { grpid: 5 }), 5);
    for await (const batch of fq) {
      expect(batch.map((g) => g.grpid)).toEqual([5]);
      fq.respond(batch[0]!.cookie);
      break;
    }
  });
});
