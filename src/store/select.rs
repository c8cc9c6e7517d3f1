//! One page of a sorted list, chosen with bounded memory.
//!
//! A sort no index holds reads every match. A shallow page keeps only the best
//! `skip + count` in a heap. A deep page would keep nearly all of them (a million sort keys
//! is over 100 MB), so it takes two reads instead: the first counts the matches and keeps a
//! uniform sample, whose order statistics give bounds just wide of the page; the second keeps
//! only what falls between them. If the sample misled (rarely: the margin is about four
//! standard deviations wide), a third read with the plain heap gives the exact answer anyway.

use std::collections::BinaryHeap;

/// How the choice is bounded.
#[derive(Clone, Copy)]
struct Limits {
    /// Deepest page (`skip + count`) kept in a single heap.
    heap_max: usize,
    /// Sample size of the first read.
    sample: usize,
    /// Sample positions added on each side of the page's estimated place: about four
    /// standard deviations of a sample quantile's position, so the bounds rarely miss.
    margin: usize,
    /// Most matches the second read keeps before giving up on the bounds.
    keep_max: usize,
}

const PRODUCTION: Limits = Limits {
    heap_max: 10_000,
    sample: 16_384,
    margin: 256,
    keep_max: 1 << 20,
};

/// Unit tests elsewhere in the crate get tiny limits, so that a few dozen resources take
/// every path.
const LIMITS: Limits = if cfg!(test) {
    Limits {
        heap_max: 8,
        sample: 16,
        margin: 2,
        keep_max: 80,
    }
} else {
    PRODUCTION
};

/// A page, the number of matches, and how many reads it took.
#[derive(Debug, PartialEq)]
pub(super) struct Selected<T> {
    pub(super) total: u64,
    pub(super) page: Vec<T>,
    pub(super) reads: u8,
}

/// The items at positions `skip..skip + count` of the order of `T` among those `read`
/// offers (it offers the same items each time it is called).
pub(super) fn page<T, E>(
    skip: usize,
    count: usize,
    read: impl FnMut(&mut dyn FnMut(T)) -> Result<(), E>,
) -> Result<Selected<T>, E>
where
    T: Ord + Clone,
{
    page_within(LIMITS, skip, count, read)
}

fn page_within<T, E>(
    limits: Limits,
    skip: usize,
    count: usize,
    mut read: impl FnMut(&mut dyn FnMut(T)) -> Result<(), E>,
) -> Result<Selected<T>, E>
where
    T: Ord + Clone,
{
    let keep = skip.saturating_add(count);
    if keep <= limits.heap_max {
        let (total, page) = heap_page(skip, count, &mut read)?;
        return Ok(Selected {
            total,
            page,
            reads: 1,
        });
    }
    // First read: count, and keep a uniform sample (reservoir sampling with a fixed seed,
    // so the same data gives the same reads).
    let mut sample = Vec::with_capacity(limits.sample);
    let mut seen = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    read(&mut |item| {
        if sample.len() < limits.sample {
            sample.push(item);
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let j = rng % (seen + 1);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| sample.get_mut(j)) {
                *slot = item;
            }
        }
        seen += 1;
    })?;
    let total = seen;
    let lo = skip as u64;
    let hi = keep.min(usize::try_from(total).unwrap_or(usize::MAX)) as u64;
    if lo >= total || count == 0 {
        return Ok(Selected {
            total,
            page: Vec::new(),
            reads: 1,
        });
    }
    sample.sort_unstable();
    let s = sample.len() as u64;
    // Sample position of a list position, rounded out, widened by the margin.
    let below = (lo * s / total).checked_sub(limits.margin as u64);
    let above = (hi * s).div_ceil(total) + limits.margin as u64;
    let low = below.and_then(|i| sample.get(i as usize)).cloned();
    let high = sample.get(above as usize).cloned();
    drop(sample);
    // Second read: count what sorts before the low bound, keep what lies between.
    let mut before = 0u64;
    let mut between = Vec::new();
    let mut overflow = false;
    read(&mut |item| {
        if low.as_ref().is_some_and(|l| item < *l) {
            before += 1;
        } else if high.as_ref().is_none_or(|h| item <= *h) && !overflow {
            if between.len() == limits.keep_max {
                overflow = true;
                between = Vec::new();
            } else {
                between.push(item);
            }
        }
    })?;
    if !overflow && before <= lo && before + between.len() as u64 >= hi {
        between.sort_unstable();
        let from = (lo - before) as usize;
        let page = between.into_iter().skip(from).take(count).collect();
        return Ok(Selected {
            total,
            page,
            reads: 2,
        });
    }
    // The sample misled: the exact answer with the heap.
    let (total, page) = heap_page(skip, count, &mut read)?;
    Ok(Selected {
        total,
        page,
        reads: 3,
    })
}

/// The page from one read keeping the best `skip + count` in a max-heap.
fn heap_page<T: Ord, E>(
    skip: usize,
    count: usize,
    read: &mut impl FnMut(&mut dyn FnMut(T)) -> Result<(), E>,
) -> Result<(u64, Vec<T>), E> {
    let keep = skip.saturating_add(count);
    let mut best = BinaryHeap::new();
    let mut total = 0u64;
    read(&mut |item| {
        total += 1;
        if keep == 0 {
            return;
        }
        best.push(item);
        if best.len() > keep {
            best.pop();
        }
    })?;
    let page = best.into_sorted_vec().into_iter().skip(skip).take(count);
    Ok((total, page.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        heap_max: 8,
        sample: 16,
        margin: 2,
        keep_max: 80,
    };

    /// Every page against the sorted list; how many pages took 1, 2 and 3 reads.
    fn check(limits: Limits, items: &[(u32, u32)]) -> [u32; 4] {
        let mut sorted = items.to_vec();
        sorted.sort_unstable();
        let mut reads = [0u32; 4];
        for skip in 0..items.len() + 2 {
            for count in [0, 1, 3, 7] {
                let got = page_within(limits, skip, count, |sink: &mut dyn FnMut((u32, u32))| {
                    items.iter().for_each(|i| sink(*i));
                    Ok::<(), ()>(())
                })
                .unwrap();
                let want: Vec<_> = sorted.iter().skip(skip).take(count).copied().collect();
                assert_eq!(got.page, want, "skip {skip} count {count}");
                assert_eq!(got.total, items.len() as u64);
                reads[got.reads as usize] += 1;
            }
        }
        reads
    }

    #[test]
    fn every_page_is_its_slice_of_the_sorted_list() {
        // Keys with many ties (the id breaks them), in a scrambled order.
        let mut x = 12345u32;
        let items: Vec<(u32, u32)> = (0..200)
            .map(|id| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((x >> 16) % 13, id)
            })
            .collect();
        let reads = check(SMALL, &items);
        assert!(
            reads[1] > 0 && reads[2] > 0,
            "one read and two reads both used: {reads:?}"
        );
        // All keys equal, offered in descending id order.
        let same: Vec<(u32, u32)> = (0..60).rev().map(|id| (7, id)).collect();
        check(SMALL, &same);
        assert_eq!(check(SMALL, &[]), [0, 8, 0, 0]);
        // The production limits agree on a list past the single heap.
        let many: Vec<(u32, u32)> = (0..12_000).map(|i| ((i * 7_919) % 101, i)).collect();
        for (skip, count) in [
            (0, 10),
            (9_995, 10),
            (10_000, 100),
            (11_990, 20),
            (12_000, 5),
        ] {
            let got = page_within(
                PRODUCTION,
                skip,
                count,
                |sink: &mut dyn FnMut((u32, u32))| {
                    many.iter().for_each(|i| sink(*i));
                    Ok::<(), ()>(())
                },
            )
            .unwrap();
            let mut sorted = many.clone();
            sorted.sort_unstable();
            let want: Vec<_> = sorted.into_iter().skip(skip).take(count).collect();
            assert_eq!((got.total, got.page), (12_000, want), "skip {skip}");
        }
    }

    #[test]
    fn bounds_that_miss_fall_back_to_the_exact_heap() {
        // Keeping at most 3 between the bounds, no page of 7 fits, so each deep page takes
        // the third read; a margin of 0 makes the bounds miss their page too.
        let items: Vec<(u32, u32)> = (0..40).map(|i| (i % 5, i)).collect();
        let reads = check(
            Limits {
                keep_max: 3,
                margin: 0,
                ..SMALL
            },
            &items,
        );
        assert!(reads[3] > 0, "the fallback ran: {reads:?}");
    }
}
