/**
 * IOMMU group assignment for PCI functions with the rules Linux 7.3 applies, function by function:
 * drivers/iommu/iommu.c (pci_device_group, get_pci_alias_group, get_pci_function_alias_group,
 * get_pci_alias_or_group, REQ_ACS_FLAGS), drivers/pci/search.c (pci_for_each_dma_alias) and
 * drivers/pci/pci.c (pci_acs_enabled, pci_acs_flags_enabled, pci_acs_path_enabled,
 * pci_devs_are_dma_aliases). Functions are probed in the order Linux adds them; a new group takes
 * the lowest free number (iommu_group_alloc's ida).
 */
import { PCI_ACS, REQ_ACS_FLAGS, type PciNode, type PciTopology } from '../hw/pci.js';

/** The group each function belongs to; groups are numbered by `alloc()`. */
export interface GroupAssignment<G> {
  get(node: PciNode): G | undefined;
  alloc(): G;
}

/**
 * pci_acs_flags_enabled: the ACS capability is present and every required flag it implements is
 * enabled in the control register (flags it does not implement count as hard-wired on, except EC).
 */
export function pciAcsFlagsEnabled(node: PciNode, flags: number): boolean {
  if (!node.fn.acsCap) return false;
  const want = flags & (node.fn.acsCapabilities | PCI_ACS.EC);
  return (node.fn.acsCtrl & want) === want;
}

/** pci_acs_enabled: whether the function isolates peer-to-peer traffic as far as `flags` go. */
export function pciAcsEnabled(node: PciNode, flags: number): boolean {
  const quirk = node.quirks.acsEnabled;
  if (quirk !== undefined) return quirk;
  // Conventional PCI and PCI-X never support ACS: the shared bus lets any device snoop DMA.
  if (!node.isPcie) return false;
  switch (node.kind) {
    case 'pci-to-pcie':
    case 'pcie-to-pci':
    case 'rc-event-collector':
      return false;
    case 'downstream':
    case 'root-port':
      return pciAcsFlagsEnabled(node, flags);
    case 'endpoint':
    case 'upstream':
    case 'legacy-endpoint':
    case 'rc-endpoint':
      // ACS applies to these only as part of a multifunction device (PCIe 6.12.1.2).
      if (!node.multifunction) return true;
      return pciAcsFlagsEnabled(node, flags);
    default:
      return true;
  }
}

/** pci_acs_path_enabled(start, NULL, flags): ACS on every function from `start` up to the root bus. */
export function pciAcsPathEnabled(start: PciNode, flags: number): boolean {
  for (let node: PciNode | null = start; node; node = node.bus.self) {
    if (!pciAcsEnabled(node, flags)) return false;
    if (node.bus.isRoot) return true;
  }
  return true;
}

/** pci_devs_are_dma_aliases (pci_real_dma_dev is the device itself on x86 and arm64 here). */
export function pciDevsAreDmaAliases(a: PciNode, b: PciNode): boolean {
  return a.dmaAliases.has(b.devfn) || b.dmaAliases.has(a.devfn);
}

/**
 * pci_for_each_dma_alias: call `fn(node, alias)` for the function's own requester ID, its quirk
 * aliases, and each bridge upstream that takes ownership of its transactions. Stops when `fn`
 * returns true.
 */
export function pciForEachDmaAlias(node: PciNode, fn: (n: PciNode, alias: number) => boolean): boolean {
  if (fn(node, node.rid)) return true;
  for (const devfn of [...node.dmaAliases].sort((x, y) => x - y)) if (fn(node, (node.bus.number << 8) | devfn)) return true;
  for (let bus = node.bus; !bus.isRoot; bus = bus.parent!) {
    const tmp = bus.self;
    if (!tmp) continue;
    if (tmp.quirks.bridgeXlateRoot) return false;
    if (tmp.isPcie) {
      switch (tmp.kind) {
        case 'root-port':
        case 'upstream':
        case 'downstream':
          continue;
        case 'pcie-to-pci':
          // PCIe-to-PCI bridges alias downstream transactions to the subordinate bus, devfn 0.
          if (tmp.quirks.pciBridgeNoAlias) continue;
          if (fn(tmp, tmp.subordinate!.number << 8)) return true;
          continue;
        case 'pci-to-pcie':
          if (fn(tmp, tmp.rid)) return true;
          continue;
        default:
          continue;
      }
    }
    // A conventional bridge: transactions appear with the bridge's own requester ID.
    const alias = tmp.quirks.pcieBridgeAlias ? tmp.subordinate!.number << 8 : tmp.rid;
    if (fn(tmp, alias)) return true;
  }
  return false;
}

/** pci_device_group: find the group `node` must share, or allocate a new one. */
export function pciDeviceGroup<G>(topo: PciTopology, node: PciNode, groups: GroupAssignment<G>): G {
  // Find the upstream DMA alias; a group met on the way is the answer.
  let found: G | undefined;
  let pdev = node;
  if (pciForEachDmaAlias(node, (n) => {
    pdev = n;
    found = groups.get(n);
    return found !== undefined;
  })) return found!;

  // Continue upstream to where ACS protects against peer-to-peer DMA.
  for (let bus = pdev.bus; !bus.isRoot; bus = bus.parent!) {
    if (!bus.self) continue;
    if (pciAcsPathEnabled(bus.self, REQ_ACS_FLAGS)) break;
    pdev = bus.self;
    const g = groups.get(pdev);
    if (g !== undefined) return g;
  }

  const devfns = new Set<number>();
  const g = getPciAliasGroup(topo, pdev, devfns, groups) ?? getPciFunctionAliasGroup(topo, pdev, devfns, groups);
  return g ?? groups.alloc();
}

/** get_pci_alias_group: an existing group of `pdev` or of a function it aliases (or that aliases it). */
function getPciAliasGroup<G>(topo: PciTopology, pdev: PciNode, devfns: Set<number>, groups: GroupAssignment<G>): G | undefined {
  if (devfns.has(pdev.devfn)) return undefined;
  devfns.add(pdev.devfn);
  const own = groups.get(pdev);
  if (own !== undefined) return own;
  for (const tmp of topo.nodes) {
    if (tmp === pdev || tmp.bus !== pdev.bus) continue;
    if (pciDevsAreDmaAliases(pdev, tmp)) {
      const g = getPciAliasGroup(topo, tmp, devfns, groups) ?? getPciFunctionAliasGroup(topo, tmp, devfns, groups);
      if (g !== undefined) return g;
    }
  }
  return undefined;
}

/** get_pci_function_alias_group: functions of a multifunction slot that are not isolated by ACS share. */
function getPciFunctionAliasGroup<G>(topo: PciTopology, pdev: PciNode, devfns: Set<number>, groups: GroupAssignment<G>): G | undefined {
  if (!pdev.multifunction || pciAcsEnabled(pdev, REQ_ACS_FLAGS)) return undefined;
  for (const tmp of topo.nodes) {
    if (tmp === pdev || tmp.bus !== pdev.bus || tmp.slot !== pdev.slot || pciAcsEnabled(tmp, REQ_ACS_FLAGS)) continue;
    const g = getPciAliasGroup(topo, tmp, devfns, groups);
    if (g !== undefined) return g;
  }
  return undefined;
}

/** Groups for a whole topology in probe order, numbered with the lowest free id (ids in `taken` are in use). */
export function assignGroups(topo: PciTopology, taken: ReadonlySet<number> = new Set()): Map<PciNode, number> {
  const out = new Map<PciNode, number>();
  const used = new Set(taken);
  const groups: GroupAssignment<number> = {
    get: (n) => out.get(n),
    alloc: () => {
      let id = 0;
      while (used.has(id)) id++;
      used.add(id);
      return id;
    },
  };
  for (const n of topo.probeOrder) out.set(n, pciDeviceGroup(topo, n, groups));
  return out;
}
