//! `__HYPERVISOR_physdev_op` (`public/physdev.h`): physical IRQ/PIRQ and PCI
//! device management for the hardware domain (and PIRQ EOI for guests). The
//! call is `physdev_op(cmd, arg)`.

use crate::{DomId, GuestHandle, XenPfn};

abi_enum! {
    /// `__HYPERVISOR_physdev_op` commands (`PHYSDEVOP_*`).
    pub enum PhysdevOp: u32, raw u64 {
        /// Deprecated: unmask notify.
        IrqUnmaskNotify = 4 => "PHYSDEVOP_IRQ_UNMASK_NOTIFY",
        /// Query IRQ status; [`PhysdevIrqStatusQuery`].
        IrqStatusQuery = 5 => "PHYSDEVOP_irq_status_query",
        /// Set the I/O privilege level; [`PhysdevSetIopl`].
        SetIopl = 6 => "PHYSDEVOP_set_iopl",
        /// Set the I/O port bitmap; [`PhysdevSetIobitmap`].
        SetIobitmap = 7 => "PHYSDEVOP_set_iobitmap",
        /// Read an IO-APIC register; [`PhysdevApic`].
        ApicRead = 8 => "PHYSDEVOP_apic_read",
        /// Write an IO-APIC register; [`PhysdevApic`].
        ApicWrite = 9 => "PHYSDEVOP_apic_write",
        /// Allocate a vector for an IRQ; [`PhysdevIrq`].
        AllocIrqVector = 10 => "PHYSDEVOP_alloc_irq_vector",
        /// Free an IRQ vector; [`PhysdevIrq`].
        FreeIrqVector = 11 => "PHYSDEVOP_free_irq_vector",
        /// EOI a PIRQ; [`PhysdevEoi`].
        Eoi = 12 => "PHYSDEVOP_eoi",
        /// Map a GSI/MSI to a PIRQ; [`PhysdevMapPirq`].
        MapPirq = 13 => "PHYSDEVOP_map_pirq",
        /// Unmap a PIRQ; [`PhysdevUnmapPirq`].
        UnmapPirq = 14 => "PHYSDEVOP_unmap_pirq",
        /// Add a PCI device; [`PhysdevManagePci`].
        ManagePciAdd = 15 => "PHYSDEVOP_manage_pci_add",
        /// Remove a PCI device; [`PhysdevManagePci`].
        ManagePciRemove = 16 => "PHYSDEVOP_manage_pci_remove",
        /// Register a PIRQ EOI bitmap frame (v1 semantics).
        PirqEoiGmfnV1 = 17 => "PHYSDEVOP_pirq_eoi_gmfn_v1",
        /// Restore MSI state of a device.
        RestoreMsi = 19 => "PHYSDEVOP_restore_msi",
        /// Add a PCI device (extended).
        ManagePciAddExt = 20 => "PHYSDEVOP_manage_pci_add_ext",
        /// Set up a GSI.
        SetupGsi = 21 => "PHYSDEVOP_setup_gsi",
        /// Get a free PIRQ; [`PhysdevGetFreePirq`].
        GetFreePirq = 23 => "PHYSDEVOP_get_free_pirq",
        /// Report an MMCONFIG region; [`PhysdevPciMmcfgReserved`].
        PciMmcfgReserved = 24 => "PHYSDEVOP_pci_mmcfg_reserved",
        /// Add a PCI device (segment aware); [`PhysdevPciDeviceAdd`].
        PciDeviceAdd = 25 => "PHYSDEVOP_pci_device_add",
        /// Remove a PCI device; [`PhysdevPciDevice`].
        PciDeviceRemove = 26 => "PHYSDEVOP_pci_device_remove",
        /// Restore MSI state (segment aware); [`PhysdevPciDevice`].
        RestoreMsiExt = 27 => "PHYSDEVOP_restore_msi_ext",
        /// Register a PIRQ EOI bitmap frame (v2 semantics, = `PHYSDEVOP_pirq_eoi_gmfn`).
        PirqEoiGmfnV2 = 28 => "PHYSDEVOP_pirq_eoi_gmfn_v2",
        /// USB debug port reset notification.
        DbgpOp = 29 => "PHYSDEVOP_dbgp_op",
        /// Prepare MSI-X of a device; [`PhysdevPciDevice`].
        PrepareMsix = 30 => "PHYSDEVOP_prepare_msix",
        /// Release MSI-X of a device; [`PhysdevPciDevice`].
        ReleaseMsix = 31 => "PHYSDEVOP_release_msix",
    }
}

impl PhysdevOp {
    /// `PHYSDEVOP_pirq_eoi_gmfn`: alias of the v2 op.
    pub const PIRQ_EOI_GMFN: PhysdevOp = PhysdevOp::PirqEoiGmfnV2;
}

/// `PHYSDEVOP_pirq_eoi_gmfn` (alias of `_v2`).
pub const PHYSDEVOP_PIRQ_EOI_GMFN: u32 = PhysdevOp::PirqEoiGmfnV2 as u32;

/// `physdev_irq_status_query.flags`: the IRQ needs an explicit EOI.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// `physdev_irq_status_query.flags`: the IRQ is shared.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// `physdev_dbgp_op.op`: reset about to happen.
pub const PHYSDEVOP_DBGP_RESET_PREPARE: u8 = 1;
/// `physdev_dbgp_op.op`: reset done.
pub const PHYSDEVOP_DBGP_RESET_DONE: u8 = 2;
/// `physdev_dbgp_op.bus`: unknown bus.
pub const PHYSDEVOP_DBGP_BUS_UNKNOWN: u8 = 0;
/// `physdev_dbgp_op.bus`: PCI.
pub const PHYSDEVOP_DBGP_BUS_PCI: u8 = 1;

abi_enum! {
    /// `physdev_map_pirq.type` (`MAP_PIRQ_TYPE_*`).
    pub enum MapPirqType: i32, raw i64 {
        /// MSI.
        Msi = 0 => "MAP_PIRQ_TYPE_MSI",
        /// GSI.
        Gsi = 1 => "MAP_PIRQ_TYPE_GSI",
        /// Unknown.
        Unknown = 2 => "MAP_PIRQ_TYPE_UNKNOWN",
        /// MSI with segment.
        MsiSeg = 3 => "MAP_PIRQ_TYPE_MSI_SEG",
        /// Multi-vector MSI.
        MultiMsi = 4 => "MAP_PIRQ_TYPE_MULTI_MSI",
    }
}

/// `physdev_pci_device_add.flags`: extended function.
pub const XEN_PCI_DEV_EXTFN: u32 = 1 << 0;
/// `physdev_pci_device_add.flags`: SR-IOV virtual function (`physfn` valid).
pub const XEN_PCI_DEV_VIRTFN: u32 = 1 << 1;
/// `physdev_pci_device_add.flags`: proximity domain follows in `optarr[0]`.
pub const XEN_PCI_DEV_PXM: u32 = 1 << 2;
/// `physdev_pci_mmcfg_reserved.flags`: region is reserved in E820.
pub const XEN_PCI_MMCFG_RESERVED: u32 = 1 << 0;

abi_struct! {
    /// `PHYSDEVOP_setup_gsi` (`struct physdev_setup_gsi`).
    pub struct PhysdevSetupGsi {
        /// The GSI.
        pub gsi: i32,
        /// 0 edge, 1 level.
        pub triggering: u8,
        /// 0 active high, 1 active low.
        pub polarity: u8,
        /// Implicit C padding.
        pub _pad6: u16,
    }
}

abi_struct! {
    /// `PHYSDEVOP_eoi`.
    pub struct PhysdevEoi {
        /// PIRQ to EOI.
        pub irq: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_irq_status_query`: caller sets `irq`, Xen writes `flags`.
    pub struct PhysdevIrqStatusQuery {
        /// IRQ.
        pub irq: u32,
        /// `XENIRQSTAT_*` (output).
        pub flags: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_set_iopl`.
    pub struct PhysdevSetIopl {
        /// New IOPL (0..=3).
        pub iopl: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_set_iobitmap`.
    pub struct PhysdevSetIobitmap {
        /// Handle of the I/O bitmap (guest VA).
        pub bitmap: GuestHandle,
        /// Number of ports covered.
        pub nr_ports: u32,
        /// Implicit C padding; zero.
        pub _pad12: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_apic_read` / `apic_write`.
    pub struct PhysdevApic {
        /// IO-APIC physical base.
        pub apic_physbase: u64,
        /// Register index.
        pub reg: u32,
        /// Value (in for write, out for read).
        pub value: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_alloc_irq_vector` / `free_irq_vector`.
    pub struct PhysdevIrq {
        /// IRQ.
        pub irq: u32,
        /// Vector (output for alloc).
        pub vector: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_map_pirq`.
    pub struct PhysdevMapPirq {
        /// Target domain.
        pub domid: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// A [`MapPirqType`].
        pub r#type: i32,
        /// GSI or MSI index.
        pub index: i32,
        /// PIRQ (in: wanted or -1; out: assigned).
        pub pirq: i32,
        /// PCI bus (MSI).
        pub bus: i32,
        /// PCI devfn (MSI).
        pub devfn: i32,
        /// MSI-X entry / number of vectors.
        pub entry_nr: i32,
        /// Implicit C padding; zero.
        pub _pad28: u32,
        /// MSI-X table base.
        pub table_base: u64,
    }
}

abi_struct! {
    /// `PHYSDEVOP_unmap_pirq`.
    pub struct PhysdevUnmapPirq {
        /// Target domain.
        pub domid: DomId,
        /// Implicit C padding; zero.
        pub _pad2: u16,
        /// PIRQ.
        pub pirq: i32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_manage_pci_add` / `remove`.
    pub struct PhysdevManagePci {
        /// Bus.
        pub bus: u8,
        /// Device/function.
        pub devfn: u8,
    }
}

abi_struct! {
    /// `physdev_pci_device_add.physfn`: the physical function of a VF.
    pub struct PhysdevPciDeviceAddPhysfn {
        /// Bus.
        pub bus: u8,
        /// Device/function.
        pub devfn: u8,
    }
}

abi_struct! {
    /// `PHYSDEVOP_pci_device_add`. In C a flexible `u32 optarr[]` follows
    /// (proximity domain with `XEN_PCI_DEV_PXM`).
    pub struct PhysdevPciDeviceAdd {
        /// Segment.
        pub seg: u16,
        /// Bus.
        pub bus: u8,
        /// Device/function.
        pub devfn: u8,
        /// `XEN_PCI_DEV_*`.
        pub flags: u32,
        /// Physical function (with `XEN_PCI_DEV_VIRTFN`).
        pub physfn: PhysdevPciDeviceAddPhysfn,
        /// Implicit C padding; zero.
        pub _pad10: u16,
    }
}

abi_struct! {
    /// `PHYSDEVOP_pci_device_remove` / `restore_msi_ext` / `prepare_msix` /
    /// `release_msix` (`struct physdev_pci_device`).
    pub struct PhysdevPciDevice {
        /// Segment.
        pub seg: u16,
        /// Bus.
        pub bus: u8,
        /// Device/function.
        pub devfn: u8,
    }
}

abi_struct! {
    /// `PHYSDEVOP_get_free_pirq`.
    pub struct PhysdevGetFreePirq {
        /// A [`MapPirqType`].
        pub r#type: i32,
        /// PIRQ (output).
        pub pirq: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_pci_mmcfg_reserved`.
    pub struct PhysdevPciMmcfgReserved {
        /// MMCONFIG base address.
        pub address: u64,
        /// Segment.
        pub segment: u16,
        /// First bus.
        pub start_bus: u8,
        /// Last bus.
        pub end_bus: u8,
        /// `XEN_PCI_MMCFG_RESERVED`.
        pub flags: u32,
    }
}

abi_struct! {
    /// `PHYSDEVOP_pirq_eoi_gmfn_v1/v2`.
    pub struct PhysdevPirqEoiGmfn {
        /// Frame of the PIRQ EOI bitmap.
        pub gmfn: XenPfn,
    }
}

zeroed_default!(
    PhysdevSetupGsi,
    PhysdevEoi,
    PhysdevIrqStatusQuery,
    PhysdevSetIopl,
    PhysdevSetIobitmap,
    PhysdevApic,
    PhysdevIrq,
    PhysdevMapPirq,
    PhysdevUnmapPirq,
    PhysdevManagePci,
    PhysdevPciDeviceAddPhysfn,
    PhysdevPciDeviceAdd,
    PhysdevPciDevice,
    PhysdevGetFreePirq,
    PhysdevPciMmcfgReserved,
    PhysdevPirqEoiGmfn,
);
