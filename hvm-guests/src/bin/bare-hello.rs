//! placeholder
#![cfg_attr(target_os = "none", no_std, no_main)]
#[cfg(not(target_os = "none"))]
fn main() {}
#[cfg(target_os = "none")]
mod kernel {
    hvm_guests::entry!(main);
    fn main(_b: hvm_guests::metal::boot::Boot) -> ! {
        hvm_guests::println!("bare: hi");
        hvm_guests::metal::power::power_off()
    }
}
