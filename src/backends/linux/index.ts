/** The linux backend: real iommufd through koffi syscalls. */
import { LinuxBinding } from './binding.js';

export { LinuxBinding, ioctl_name } from './binding.js';

/** A binding on the running kernel's /dev/iommu. */
export function linux(): LinuxBinding {
  return new LinuxBinding();
}
