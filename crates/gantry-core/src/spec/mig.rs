//! MIG (Multi-Instance GPU) profile tables and placement rules for A100 40GB, A100 80GB and H100 80GB.
//!
//! A MIG-capable GPU has 8 memory slices (positions 0..=7) and 7 compute slices. A GPU instance of a
//! profile occupies `placement_size` consecutive memory slices starting at one of the profile's allowed
//! start positions (what `nvidia-smi mig -lgipp` prints as `{starts}:size`): a `7g` takes all 8 from 0,
//! a `4g` 4 from 0, a `3g` 4 from 0 or 4, a `2g` 2 from 0, 2 or 4, a `1g` with two memory slices 2 from
//! 0, 2, 4 or 6, and a `1g` 1 from any of 0..=6. Two instances never share a slice.
//!
//! Sources: H100 80GB from real `nvidia-smi mig -lgip` output (`shared/fixtures/nvidia/h100-80gb-hbm3/
//! mig-profiles.txt`: names, profile ids, instance counts, memory); A100 from NVIDIA's MIG user guide
//! ("Supported MIG Profiles": fractions of memory and SMs, instance counts) and published `-lgip` output
//! of A100-SXM4-40GB and -80GB; start positions from `nvidia-smi mig -lgipp`, identical on all three.
//! Memory is the usable size the driver reports, in MiB (nvidia-smi prints GiB with two decimals).

/// Memory slices of a MIG-capable GPU (placement positions 0..=7).
pub const MEMORY_SLICES: u8 = 8;

/// Compute slices of a MIG-capable GPU.
pub const COMPUTE_SLICES: u8 = 7;

/// One GPU-instance profile: its name, size and where it may be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigProfile {
    /// Profile name as nvidia-smi and the device plugin write it, e.g. `3g.40gb`.
    pub name: &'static str,
    /// GPU-instance profile id (`nvidia-smi mig -cgi <id>`).
    pub id: u8,
    /// Compute slices (the number before `g`).
    pub compute_slices: u8,
    /// Memory slices, out of [`MEMORY_SLICES`]; also the width of a placement.
    pub memory_slices: u8,
    /// Usable memory in MiB.
    pub memory_mib: u32,
    /// Most instances of this profile on one GPU.
    pub max_instances: u8,
    /// Allowed start slices, ascending.
    pub starts: &'static [u8],
    /// True for `+me` profiles, which take the GPU's one set of media extensions.
    pub media_extensions: bool,
}

impl MigProfile {
    /// Slices covered by an instance starting at `start`, as a mask.
    pub fn mask_at(&self, start: u8) -> SliceMask {
        let width = u16::from(self.memory_slices);
        let bits = ((1u16 << width) - 1) << start;
        SliceMask((bits & 0xff) as u8)
    }
}

/// Occupied memory slices of one GPU (bit i = slice i).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SliceMask(pub u8);

impl SliceMask {
    /// No slice occupied.
    pub const EMPTY: SliceMask = SliceMask(0);

    /// A mask of the given slice positions (positions of 8 or more are ignored).
    pub fn of(slices: &[u8]) -> Self {
        SliceMask(
            slices
                .iter()
                .filter(|&&s| s < MEMORY_SLICES)
                .fold(0u8, |m, &s| m | (1 << s)),
        )
    }

    /// True when no slice of `other` is in this mask.
    pub fn is_disjoint(self, other: SliceMask) -> bool {
        self.0 & other.0 == 0
    }

    /// Number of occupied slices.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

/// The MIG profiles of one GPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigTable {
    /// Canonical model name, e.g. `H100-80GB`.
    pub model: &'static str,
    /// Total usable memory of the GPU in MiB (the `7g` profile's memory).
    pub memory_mib: u32,
    /// The profiles, largest compute last.
    pub profiles: &'static [MigProfile],
}

/// Start slices of one-slice profiles.
const ONE: &[u8] = &[0, 1, 2, 3, 4, 5, 6];
/// Start slices of `1g` profiles with two memory slices.
const ONE_WIDE: &[u8] = &[0, 2, 4, 6];
/// Start slices of `2g` profiles.
const TWO: &[u8] = &[0, 2, 4];
/// Start slices of `3g` profiles.
const THREE: &[u8] = &[0, 4];
/// Start slice of `4g` and `7g` profiles.
const FULL: &[u8] = &[0];

/// Builds a profile row.
const fn p(
    name: &'static str,
    id: u8,
    compute_slices: u8,
    memory_slices: u8,
    memory_mib: u32,
    max_instances: u8,
    starts: &'static [u8],
) -> MigProfile {
    MigProfile {
        name,
        id,
        compute_slices,
        memory_slices,
        memory_mib,
        max_instances,
        starts,
        media_extensions: false,
    }
}

/// Builds a `+me` profile row (one per GPU).
const fn me(name: &'static str, id: u8, memory_mib: u32) -> MigProfile {
    MigProfile {
        name,
        id,
        compute_slices: 1,
        memory_slices: 1,
        memory_mib,
        max_instances: 1,
        starts: ONE,
        media_extensions: true,
    }
}

/// A100 40GB (SXM4 and PCIe): 4.75 / 9.75 / 19.62 / 39.50 GiB instances.
pub const A100_40GB: MigTable = MigTable {
    model: "A100-40GB",
    memory_mib: 40_448,
    profiles: &[
        p("1g.5gb", 19, 1, 1, 4_864, 7, ONE),
        me("1g.5gb+me", 20, 4_864),
        p("1g.10gb", 15, 1, 2, 9_984, 4, ONE_WIDE),
        p("2g.10gb", 14, 2, 2, 9_984, 3, TWO),
        p("3g.20gb", 9, 3, 4, 20_096, 2, THREE),
        p("4g.20gb", 5, 4, 4, 20_096, 1, FULL),
        p("7g.40gb", 0, 7, 8, 40_448, 1, FULL),
    ],
};

/// A100 80GB (SXM4 and PCIe): 9.50 / 19.50 / 39.25 / 79.00 GiB instances.
pub const A100_80GB: MigTable = MigTable {
    model: "A100-80GB",
    memory_mib: 80_896,
    profiles: &[
        p("1g.10gb", 19, 1, 1, 9_728, 7, ONE),
        me("1g.10gb+me", 20, 9_728),
        p("1g.20gb", 15, 1, 2, 19_968, 4, ONE_WIDE),
        p("2g.20gb", 14, 2, 2, 19_968, 3, TWO),
        p("3g.40gb", 9, 3, 4, 40_192, 2, THREE),
        p("4g.40gb", 5, 4, 4, 40_192, 1, FULL),
        p("7g.80gb", 0, 7, 8, 80_896, 1, FULL),
    ],
};

/// H100 80GB (SXM5 HBM3 and PCIe): 9.75 / 19.62 / 39.50 / 79.25 GiB instances.
pub const H100_80GB: MigTable = MigTable {
    model: "H100-80GB",
    memory_mib: 81_152,
    profiles: &[
        p("1g.10gb", 19, 1, 1, 9_984, 7, ONE),
        me("1g.10gb+me", 20, 9_984),
        p("1g.20gb", 15, 1, 2, 20_096, 4, ONE_WIDE),
        p("2g.20gb", 14, 2, 2, 20_096, 3, TWO),
        p("3g.40gb", 9, 3, 4, 40_448, 2, THREE),
        p("4g.40gb", 5, 4, 4, 40_448, 1, FULL),
        p("7g.80gb", 0, 7, 8, 81_152, 1, FULL),
    ],
};

/// Every known table.
pub const TABLES: [&MigTable; 3] = [&A100_40GB, &A100_80GB, &H100_80GB];

impl MigTable {
    /// The profile called `name` (exact, e.g. `3g.40gb`).
    pub fn profile(&self, name: &str) -> Option<&'static MigProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profile names, comma separated (for messages).
    pub fn profile_names(&self) -> String {
        self.profiles
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The MIG table for a GPU model name, if the model supports MIG and is known.
///
/// Accepts the canonical names (`A100-40GB`, `A100-80GB`, `H100-80GB`) and product names as nvidia-smi
/// prints them (`NVIDIA A100-SXM4-40GB`, `NVIDIA A100 80GB PCIe`, `NVIDIA H100 80GB HBM3`, `H100-SXM5-80GB`):
/// case, spaces and dashes are ignored; the memory size must be in the name.
pub fn table_for_model(name: &str) -> Option<&'static MigTable> {
    let key: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let has = |s: &str| key.contains(s);
    if has("A100") && has("40GB") {
        Some(&A100_40GB)
    } else if has("A100") && has("80GB") {
        Some(&A100_80GB)
    } else if has("H100") && has("80GB") {
        Some(&H100_80GB)
    } else {
        None
    }
}

/// The start slices where `profile` fits on a GPU whose occupied slices are `occupied`, ascending.
///
/// This is the slice rule only; [`legal_starts_with`] also applies the per-profile instance limit.
pub fn legal_starts(profile: &MigProfile, occupied: SliceMask) -> Vec<u8> {
    profile
        .starts
        .iter()
        .copied()
        .filter(|&s| s + profile.memory_slices <= MEMORY_SLICES)
        .filter(|&s| occupied.is_disjoint(profile.mask_at(s)))
        .collect()
}

/// An instance already on a GPU: its profile and start slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigInstance {
    /// The profile.
    pub profile: &'static MigProfile,
    /// The first memory slice it occupies.
    pub start: u8,
}

/// The start slices where one more `profile` instance fits next to `placed`, ascending: the slice rule
/// plus the profile's instance limit (one `+me` per GPU) and the compute-slice budget.
pub fn legal_starts_with(profile: &MigProfile, placed: &[MigInstance]) -> Vec<u8> {
    let occupied = SliceMask(
        placed
            .iter()
            .fold(0u8, |m, i| m | i.profile.mask_at(i.start).0),
    );
    let same = placed
        .iter()
        .filter(|i| i.profile.name == profile.name)
        .count();
    let media = placed.iter().any(|i| i.profile.media_extensions);
    let compute: u32 = placed
        .iter()
        .map(|i| u32::from(i.profile.compute_slices))
        .sum();
    if same >= usize::from(profile.max_instances)
        || (profile.media_extensions && media)
        || compute + u32::from(profile.compute_slices) > u32::from(COMPUTE_SLICES)
    {
        return Vec::new();
    }
    legal_starts(profile, occupied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100(name: &str) -> &'static MigProfile {
        H100_80GB.profile(name).unwrap()
    }

    #[test]
    fn h100_starts_on_an_empty_gpu() {
        assert_eq!(legal_starts(h100("7g.80gb"), SliceMask::EMPTY), vec![0]);
        assert_eq!(legal_starts(h100("4g.40gb"), SliceMask::EMPTY), vec![0]);
        assert_eq!(legal_starts(h100("3g.40gb"), SliceMask::EMPTY), vec![0, 4]);
        assert_eq!(
            legal_starts(h100("2g.20gb"), SliceMask::EMPTY),
            vec![0, 2, 4]
        );
        assert_eq!(
            legal_starts(h100("1g.20gb"), SliceMask::EMPTY),
            vec![0, 2, 4, 6]
        );
        assert_eq!(
            legal_starts(h100("1g.10gb"), SliceMask::EMPTY),
            vec![0, 1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn occupied_slices_remove_overlapping_starts() {
        let first_half = h100("3g.40gb").mask_at(0);
        assert_eq!(first_half, SliceMask::of(&[0, 1, 2, 3]));
        assert_eq!(legal_starts(h100("3g.40gb"), first_half), vec![4]);
        assert_eq!(legal_starts(h100("4g.40gb"), first_half), Vec::<u8>::new());
        assert_eq!(legal_starts(h100("7g.80gb"), first_half), Vec::<u8>::new());
        assert_eq!(legal_starts(h100("2g.20gb"), first_half), vec![4]);
        assert_eq!(legal_starts(h100("1g.20gb"), first_half), vec![4, 6]);
        assert_eq!(legal_starts(h100("1g.10gb"), first_half), vec![4, 5, 6]);
        // One 1g in slice 0 blocks every profile that must start at 0.
        let one = SliceMask::of(&[0]);
        assert!(legal_starts(h100("7g.80gb"), one).is_empty());
        assert!(legal_starts(h100("4g.40gb"), one).is_empty());
        assert_eq!(legal_starts(h100("3g.40gb"), one), vec![4]);
        // Slice 7 is only reachable by two-slice and larger profiles.
        let all_but_7 = SliceMask::of(&[0, 1, 2, 3, 4, 5, 6]);
        assert!(legal_starts(h100("1g.10gb"), all_but_7).is_empty());
        assert!(legal_starts(h100("1g.20gb"), all_but_7).is_empty());
    }

    #[test]
    fn instance_limits_and_compute_budget_apply() {
        let me = h100("1g.10gb+me");
        let placed = [MigInstance {
            profile: me,
            start: 0,
        }];
        assert!(legal_starts_with(me, &placed).is_empty(), "one +me per GPU");
        assert_eq!(
            legal_starts_with(h100("1g.10gb"), &placed),
            vec![1, 2, 3, 4, 5, 6]
        );
        let two_3g = [
            MigInstance {
                profile: h100("3g.40gb"),
                start: 0,
            },
            MigInstance {
                profile: h100("3g.40gb"),
                start: 4,
            },
        ];
        assert!(legal_starts_with(h100("1g.10gb"), &two_3g).is_empty());
        let four = [MigInstance {
            profile: h100("4g.40gb"),
            start: 0,
        }];
        assert_eq!(legal_starts_with(h100("3g.40gb"), &four), vec![4]);
        assert!(legal_starts_with(h100("4g.40gb"), &four).is_empty());
        // Seven 1g instances use every compute slice.
        let sevens: Vec<MigInstance> = (0..7)
            .map(|s| MigInstance {
                profile: h100("1g.10gb"),
                start: s,
            })
            .collect();
        assert!(legal_starts_with(h100("1g.20gb"), &sevens).is_empty());
    }

    #[test]
    fn every_full_packing_fits_in_the_slice_and_compute_budget() {
        for table in TABLES {
            for prof in table.profiles {
                assert!(prof.starts.windows(2).all(|w| w[0] < w[1]));
                assert!(
                    prof.starts
                        .iter()
                        .all(|&s| s + prof.memory_slices <= MEMORY_SLICES),
                    "{} {}",
                    table.model,
                    prof.name
                );
                // Greedy packing of one profile reaches its published instance count.
                let mut placed = Vec::new();
                while let Some(&s) = legal_starts_with(prof, &placed).first() {
                    placed.push(MigInstance {
                        profile: prof,
                        start: s,
                    });
                }
                assert_eq!(
                    placed.len(),
                    usize::from(prof.max_instances),
                    "{} {}",
                    table.model,
                    prof.name
                );
                assert!(prof.memory_mib <= table.memory_mib);
            }
        }
    }

    #[test]
    fn h100_table_matches_the_nvidia_smi_fixture() {
        // (name, id, instances, GiB) from shared/fixtures/nvidia/h100-80gb-hbm3/mig-profiles.txt.
        let fixture = [
            ("1g.10gb", 19, 7, 9.75),
            ("1g.10gb+me", 20, 1, 9.75),
            ("1g.20gb", 15, 4, 19.62),
            ("2g.20gb", 14, 3, 19.62),
            ("3g.40gb", 9, 2, 39.50),
            ("4g.40gb", 5, 1, 39.50),
            ("7g.80gb", 0, 1, 79.25),
        ];
        assert_eq!(H100_80GB.profiles.len(), fixture.len());
        for (name, id, n, gib) in fixture {
            let p = h100(name);
            assert_eq!((p.id, p.max_instances), (id, n), "{name}");
            let printed = format!("{:.2}", f64::from(p.memory_mib) / 1024.0);
            assert_eq!(printed, format!("{gib:.2}"), "{name}");
        }
    }

    #[test]
    fn model_names_map_to_tables() {
        for (name, model) in [
            ("H100-80GB", Some("H100-80GB")),
            ("NVIDIA H100 80GB HBM3", Some("H100-80GB")),
            ("h100-sxm5-80gb", Some("H100-80GB")),
            ("A100-SXM4-40GB", Some("A100-40GB")),
            ("NVIDIA A100 80GB PCIe", Some("A100-80GB")),
            ("A100-80GB", Some("A100-80GB")),
            ("A100", None),
            ("H100 NVL", None),
            ("T4", None),
            ("RTX A1000", None),
        ] {
            assert_eq!(table_for_model(name).map(|t| t.model), model, "{name}");
        }
        assert_eq!(A100_40GB.profile("2g.10gb").map(|p| p.id), Some(14));
        assert!(A100_40GB.profile("3g.40gb").is_none());
    }
}
