//! RFC 6962 / RFC 9162 Merkle trees: hashing, roots, proofs and their
//! verification.
//!
//! Leaves are hashed as `SHA-256(0x00 || data)` and interior nodes as
//! `SHA-256(0x01 || left || right)`. The verifiers follow RFC 9162
//! §2.1.3.2 and §2.1.4.2 and refuse the degenerate cases the
//! transparency-dev verifier refuses (a consistency proof from the empty
//! tree, a non-empty proof between equal sizes). They are checked against
//! the transparency-dev known-answer vectors.

use sha2::{Digest as _, Sha256};

/// A tree hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8], right: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof did not verify, or could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not inside the tree.
    #[error("index {index} is outside a tree of size {size}")]
    OutOfRange {
        /// The index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The sizes cannot be related by a consistency proof.
    #[error("cannot prove consistency from size {old} to size {new}")]
    BadSizes {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// A hash has the wrong length.
    #[error("a hash is not 32 bytes long")]
    BadHashLength,
    /// The proof leads to another root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// Largest power of two strictly less than `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    let mut k = 1u64;
    while k.saturating_mul(2) < n {
        k *= 2;
    }
    k
}

/// The Merkle tree hash (RFC 9162 `MTH`) of `leaves` (leaf hashes).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [only] => *only,
        _ => {
            let k = usize::try_from(split_point(len64(leaves))).unwrap_or(usize::MAX);
            let (left, right) = leaves.split_at(k.min(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

fn len64<T>(items: &[T]) -> u64 {
    u64::try_from(items.len()).unwrap_or(u64::MAX)
}

/// The inclusion proof (audit path) of leaf `index` in the tree of
/// `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = len64(leaves);
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Ok(proof)
}

fn path(leaves: &[Hash], index: u64, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(len64(leaves));
    let (left, right) = leaves.split_at(usize::try_from(k).unwrap_or(usize::MAX).min(leaves.len()));
    if index < k {
        path(left, index, out);
        out.push(root(right));
    } else {
        path(right, index - k, out);
        out.push(root(left));
    }
}

/// The consistency proof between the tree of the first `old_size` leaves
/// and the tree of all `leaves`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new_size = len64(leaves);
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    let mut proof = Vec::new();
    subproof(old_size, leaves, true, &mut proof);
    Ok(proof)
}

fn subproof(m: u64, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = len64(leaves);
    if m == n {
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let k = split_point(n);
    let (left, right) = leaves.split_at(usize::try_from(k).unwrap_or(usize::MAX).min(leaves.len()));
    if m <= k {
        subproof(m, left, complete, out);
        out.push(root(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root(left));
    }
}

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    if leaf.len() != 32 {
        return Err(ProofError::BadHashLength);
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut hash: Vec<u8> = leaf.to_vec();
    for sibling in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling.as_ref(), &hash).to_vec();
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling.as_ref()).to_vec();
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if hash != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root` (RFC 9162
/// §2.1.4.2). Refuses a proof from the empty tree and a non-empty proof
/// between equal sizes.
pub fn verify_consistency<P: AsRef<[u8]>>(
    old_size: u64,
    new_size: u64,
    proof: &[P],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), ProofError> {
    if new_size < old_size || old_size == 0 {
        return Err(ProofError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut path: Vec<&[u8]> = proof.iter().map(AsRef::as_ref).collect();
    if old_size.is_power_of_two() {
        path.insert(0, old_root);
    }
    let (first, rest) = path.split_first().ok_or(ProofError::WrongLength)?;
    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr: Vec<u8> = first.to_vec();
    let mut sr: Vec<u8> = first.to_vec();
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr).to_vec();
            sr = node_hash(c, &sr).to_vec();
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c).to_vec();
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != old_root || sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a growing tree: enough to compute the root after
/// every append in `O(log n)` space and time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees, largest first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        // A tree of 2^64 - 1 leaves only comes from a hostile checkpoint
        // (`from_peaks`); it must not panic, and its root is wrong anyway.
        self.size = self.size.saturating_add(1);
    }

    /// The roots of the tree's perfect subtrees, largest (leftmost) first:
    /// one for every bit set in [`size`](Self::size). They are all a
    /// writer needs to continue the tree, and they determine its root.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The frontier of a tree of `size` leaves whose perfect subtrees have
    /// the roots `peaks`, largest first (as [`peaks`](Self::peaks) gives
    /// them). `None` unless there is exactly one peak for every bit set in
    /// `size`. Nothing here says the peaks are those of any particular
    /// tree: compare [`root`](Self::root) with a root obtained elsewhere
    /// (a signed checkpoint's). Two different sets of peaks for one size
    /// with the same root would be a SHA-256 collision.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (u64::from(size.count_ones()) == u64::try_from(peaks.len()).ok()?)
            .then_some(Self { size, peaks })
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return empty_root();
        };
        peaks.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    proptest! {
        #[test]
        fn frontier_matches_the_recursive_root(n in 0u64..300) {
            let all = leaves(n);
            let mut frontier = Frontier::new();
            for leaf in &all {
                frontier.push(*leaf);
            }
            prop_assert_eq!(frontier.root(), root(&all));
            prop_assert_eq!(frontier.size(), n);
        }

        #[test]
        fn a_frontier_rebuilt_from_its_peaks_continues_the_same_tree(n in 0u64..300, more in 0u64..40) {
            let all = leaves(n + more);
            let mut frontier = Frontier::new();
            for leaf in &all[..n as usize] {
                frontier.push(*leaf);
            }
            let mut rebuilt = Frontier::from_peaks(n, frontier.peaks().to_vec()).unwrap();
            prop_assert_eq!(&rebuilt, &frontier);
            for leaf in &all[n as usize..] {
                rebuilt.push(*leaf);
            }
            prop_assert_eq!(rebuilt.root(), root(&all));
            // One peak too many or too few is refused.
            let mut extra = frontier.peaks().to_vec();
            extra.push([0; 32]);
            prop_assert!(Frontier::from_peaks(n, extra).is_none());
            if n > 0 {
                let fewer = frontier.peaks()[1..].to_vec();
                prop_assert!(Frontier::from_peaks(n, fewer).is_none());
            }
        }

        #[test]
        fn proofs_hold_across_every_pair_of_checkpoints(
            n in 1u64..60,
            mut cuts in proptest::collection::vec(1u64..60, 1..6),
        ) {
            // A log of `n` appends with checkpoints at random sizes.
            let all = leaves(n);
            let mut frontier = Frontier::new();
            let mut checkpoints = Vec::new();
            cuts.iter_mut().for_each(|c| *c = (*c).min(n));
            cuts.sort_unstable();
            cuts.dedup();
            for (i, leaf) in all.iter().enumerate() {
                frontier.push(*leaf);
                if cuts.contains(&(i as u64 + 1)) {
                    checkpoints.push((frontier.size(), frontier.root()));
                }
            }
            for &(size, checkpoint_root) in &checkpoints {
                let covered = &all[..size as usize];
                for index in 0..size {
                    let proof = inclusion_proof(covered, index).unwrap();
                    prop_assert!(verify_inclusion(index, size, &all[index as usize], &proof, &checkpoint_root).is_ok());
                }
            }
            for &(old, old_root) in &checkpoints {
                for &(new, new_root) in checkpoints.iter().filter(|(s, _)| *s >= old) {
                    let proof = consistency_proof(&all[..new as usize], old).unwrap();
                    prop_assert!(verify_consistency(old, new, &proof, &old_root, &new_root).is_ok());
                }
            }
        }

        #[test]
        fn every_proof_verifies_and_a_wrong_one_does_not(n in 1u64..70, old in 1u64..70, index in 0u64..70) {
            let all = leaves(n);
            let tree_root = root(&all);
            let index = index % n;
            let proof = inclusion_proof(&all, index).unwrap();
            prop_assert!(verify_inclusion(index, n, &all[index as usize], &proof, &tree_root).is_ok());
            let wrong = leaf_hash(b"not in the tree");
            prop_assert!(verify_inclusion(index, n, &wrong, &proof, &tree_root).is_err());
            let old = old.min(n);
            let old_root = root(&all[..old as usize]);
            let proof = consistency_proof(&all, old).unwrap();
            prop_assert!(verify_consistency(old, n, &proof, &old_root, &tree_root).is_ok());
            if old < n {
                prop_assert!(verify_consistency(old, n, &proof, &wrong, &tree_root).is_err());
            }
        }
    }
}
