// A scenario for `ioasid map` (docs/cli.md): three buffers mapped into the IOAS the command
// built, after it attached the devices given with --device.
//
//   ioasid map --device 0000:00:01.0 --scenario examples/map-buffers.mjs --html map.html
//
// Its default export is given the iommufd (ctx), the IOAS and the attached VfioDevices. Areas
// mapped through `ioas` are in the drawing; the command keeps the memory until it has drawn it.
export default function mapBuffers(ctx, ioas) {
  ioas.map(ctx.mmap(0x10000), { iova: 0x100000n }); // 64 KiB at 1 MiB, read and write
  ioas.map(ctx.mmap(0x200000), { iova: 0x40000000n }); // 2 MiB at 1 GiB
  ioas.map(ctx.mmap(0x1000), { iova: 0xfed00000n, writeable: false }); // a read-only page under the MSI window
}
