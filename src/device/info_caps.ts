/**
 * VFIO capability chains: after an info struct (device, region, IOMMU info) the kernel may place
 * a list of `struct vfio_info_cap_header { u16 id; u16 version; u32 next; }` entries, each `next`
 * an offset from the start of the info buffer, 0 ending the chain. If `argsz` was too small the
 * kernel sets the CAPS flag, raises argsz to the size it needs and leaves cap_offset 0.
 */

/** One capability: its id and version, and its bytes (header included). */
export interface InfoCap {
  readonly id: number;
  readonly version: number;
  /** Offset of the header in the info buffer. */
  readonly offset: number;
  readonly bytes: Uint8Array;
}

const HEADER = 8;

/**
 * Walk the chain starting at `first` in `buf`. Throws on a chain that leaves the buffer or loops
 * (at most one entry per 8 bytes, as the vfio selftests bound it).
 */
export function parseCaps(buf: Uint8Array, first: number): InfoCap[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const caps: InfoCap[] = [];
  const offsets: number[] = [];
  for (let off = first; off !== 0; ) {
    if (off + HEADER > buf.length || caps.length > buf.length / HEADER) {
      throw new RangeError(`VFIO capability chain is corrupt at offset ${off}`);
    }
    const next = dv.getUint32(off + 4, true);
    offsets.push(off);
    caps.push({ id: dv.getUint16(off, true), version: dv.getUint16(off + 2, true), offset: off, bytes: buf });
    off = next;
  }
  // Each capability's bytes run to the next header above it or to the end of the buffer.
  const sorted = [...offsets].sort((a, b) => a - b);
  return caps.map((c) => {
    const end = sorted.find((o) => o > c.offset) ?? buf.length;
    return { ...c, bytes: buf.slice(c.offset, end) };
  });
}
