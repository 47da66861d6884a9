//! Internal helper macros: typed ABI enums with `from_raw`/`name`, and
//! zero-filled `Default` impls for structs with large arrays.

/// Declares a `#[repr(int)]` enum of ABI values.
///
/// Generates `ALL`, `from_raw(raw)`, `raw(self)` and `name(self)` (the Xen
/// name of the value) plus `From<Enum> for repr` and `TryFrom<raw>`.
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident : $repr:ty, raw $raw:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr => $cname:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($repr)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value of this enum, in declaration order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// Decodes a raw ABI value; `None` if Xen defines no such value.
            #[inline]
            pub const fn from_raw(raw: $raw) -> Option<Self> {
                $(
                    if raw == (Self::$variant as $repr) as $raw {
                        return Some(Self::$variant);
                    }
                )+
                None
            }

            /// The raw ABI value.
            pub const fn raw(self) -> $repr {
                self as $repr
            }

            /// Xen's name for this value.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $cname, )+
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                v as $repr
            }
        }

        impl TryFrom<$raw> for $name {
            type Error = $raw;

            /// Decodes a raw ABI value, returning it back if it is unknown.
            fn try_from(raw: $raw) -> Result<Self, $raw> {
                Self::from_raw(raw).ok_or(raw)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Implements `Default` as all-zero bytes for types too large for a derived
/// `Default` (arrays longer than 32 elements).
macro_rules! zeroed_default {
    ($($t:ty),+ $(,)?) => {
        $(
            impl Default for $t {
                fn default() -> Self {
                    <Self as zerocopy::FromZeros>::new_zeroed()
                }
            }
        )+
    };
}

/// Declares a `#[repr(C)]` ABI struct with the standard zerocopy derives.
macro_rules! abi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($body:tt)* }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq,
            zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout,
        )]
        #[repr(C)]
        pub struct $name { $($body)* }
    };
}
