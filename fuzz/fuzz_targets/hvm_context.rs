//! HVM context records (`XEN_DOMCTL_sethvmcontext`'s buffer, and the
//! `HVM_CONTEXT` record of a saved image): the record walker
//! (hypercall-abi `hvm_save::records`) and the loaders of each device's
//! record (xen-core `hvm`: PIC, IOAPIC, PIT, RTC, PM timer, MTRRs, LAPIC).
//!
//! Checks: an accepted buffer's records lie inside it and written back
//! with `put_record` give the same bytes; a device that refuses a record
//! is left unchanged (its saved state is what it was); a device that
//! takes a record saves state it takes again unchanged (save, restore,
//! save is stable).
#![no_main]

use hypercall_abi::hvm_save::{self, code, HvmHwLapic, HvmSaveDescriptor};
use libfuzzer_sys::fuzz_target;
use xen_core::hvm::msr::{MsrState, MTRR_SAVE_LEN};
use xen_core::hvm::vacpi::{PmConfig, VAcpi, PMTIMER_SAVE_LEN};
use xen_core::hvm::vioapic::{VIoApic, IOAPIC_SAVE_LEN};
use xen_core::hvm::vlapic::{LapicConfig, LapicHidden, VLapic, LAPIC_REGS_LEN};
use xen_core::hvm::vpic::{VPic, PIC_SAVE_LEN};
use xen_core::hvm::vpit::{VPit, PIT_SAVE_LEN};
use xen_core::hvm::vrtc::{VRtc, RTC_SAVE_LEN};
use zerocopy::FromBytes;

const NOW: u64 = 5_000_000_000;
const HOST_SECS: i64 = 1_700_000_000;

fn pic_state(p: &VPic) -> ([u8; PIC_SAVE_LEN], [u8; PIC_SAVE_LEN]) {
    (p.master().save(), p.slave().save())
}

fn device(ty: u16, data: &[u8], lapic_hidden: &mut Option<HvmHwLapic>) {
    match ty {
        code::PIC => {
            let Ok(b) = <[u8; PIC_SAVE_LEN]>::try_from(data) else {
                return;
            };
            let mut p = VPic::new();
            let before = pic_state(&p);
            let slave = VPic::new().slave().save();
            if p.restore(&b, &slave) {
                let s = pic_state(&p);
                assert!(p.restore(&s.0, &s.1), "PIC refuses its own state");
                assert_eq!(pic_state(&p), s, "PIC state not stable");
            } else {
                assert_eq!(pic_state(&p), before, "a refused PIC record changed it");
            }
        }
        code::IOAPIC => {
            let Ok(b) = <[u8; IOAPIC_SAVE_LEN]>::try_from(data) else {
                return;
            };
            let mut a = VIoApic::new(0);
            let before = a.save();
            if a.restore(&b) {
                let s = a.save();
                assert!(a.restore(&s), "IOAPIC refuses its own state");
                assert_eq!(a.save(), s, "IOAPIC state not stable");
            } else {
                assert_eq!(a.save(), before, "a refused IOAPIC record changed it");
            }
        }
        code::PIT => {
            let Ok(b) = <[u8; PIT_SAVE_LEN]>::try_from(data) else {
                return;
            };
            let mut p = VPit::new();
            let before = p.save(NOW);
            if p.restore(&b, NOW) {
                let s = p.save(NOW);
                assert!(p.restore(&s, NOW), "PIT refuses its own state");
                assert_eq!(p.save(NOW), s, "PIT state not stable");
            } else {
                assert_eq!(p.save(NOW), before, "a refused PIT record changed it");
            }
        }
        code::RTC => {
            let Ok(b) = <[u8; RTC_SAVE_LEN]>::try_from(data) else {
                return;
            };
            let mut r = VRtc::new(HOST_SECS as u64, NOW);
            r.restore(&b, NOW, HOST_SECS);
            let s = r.save(NOW, HOST_SECS);
            r.restore(&s, NOW, HOST_SECS);
            assert_eq!(r.save(NOW, HOST_SECS), s, "RTC state not stable");
        }
        code::PMTIMER => {
            let Ok(b) = <[u8; PMTIMER_SAVE_LEN]>::try_from(data) else {
                return;
            };
            let mut a = VAcpi::new(PmConfig::default(), NOW);
            a.restore(&b, NOW);
            let s = a.save(NOW);
            a.restore(&s, NOW);
            assert_eq!(a.save(NOW), s, "PM timer state not stable");
        }
        code::MTRR => {
            let Ok(b) = <[u8; MTRR_SAVE_LEN]>::try_from(data) else {
                return;
            };
            for bits in [36, 40, 52] {
                if let Some((m, pat)) = MsrState::load(&b, bits) {
                    let s = m.save(pat);
                    assert_eq!(MsrState::load(&s, bits), Some((m, pat)), "MTRRs not stable");
                }
            }
        }
        code::LAPIC => {
            *lapic_hidden = HvmHwLapic::read_from_bytes(data).ok();
        }
        code::LAPIC_REGS => {
            let (Some(h), Ok(regs)) = (*lapic_hidden, <[u8; LAPIC_REGS_LEN]>::try_from(data))
            else {
                return;
            };
            let hidden = LapicHidden {
                apic_base_msr: h.apic_base_msr,
                disabled: h.disabled,
                timer_divisor: h.timer_divisor,
                tdt_msr: h.tdt_msr,
            };
            let mut l = VLapic::new(0, true, LapicConfig::default());
            let before = l.save(NOW);
            match l.restore(&hidden, &regs, NOW, NOW) {
                Ok(()) => {
                    let (h2, r2) = l.save(NOW);
                    l.restore(&h2, &r2, NOW, NOW)
                        .expect("LAPIC refuses its own state");
                    assert_eq!(l.save(NOW), (h2, r2), "LAPIC state not stable");
                }
                Err(_) => assert_eq!(l.save(NOW), before, "a refused LAPIC record changed it"),
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(recs) = hvm_save::records(data) else {
        return;
    };
    let dsz = core::mem::size_of::<HvmSaveDescriptor>();
    let mut out = vec![0u8; data.len()];
    let mut pos = 0;
    let mut lapic = None;
    for r in recs {
        assert_eq!(r.data.len(), r.desc.length as usize);
        let n = hvm_save::put_record(&mut out, pos, r.desc.typecode, r.desc.instance, r.data)
            .expect("a record that fits the buffer it came from");
        assert_eq!(
            &out[pos..pos + n],
            &data[pos..pos + n],
            "record {pos} rewritten differently"
        );
        pos += n;
        device(r.desc.typecode, r.data, &mut lapic);
    }
    // The END record follows.
    let end = HvmSaveDescriptor::read_from_bytes(&data[pos..pos + dsz]).expect("END descriptor");
    assert_eq!(end.typecode, code::END);
});
