use std::collections::{BTreeMap, VecDeque};
use vmstate_runtime::VmState;

#[derive(VmState, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
#[vmstate(name = "e", nested)]
struct E {
    x: u8,
}

#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    n: u8,
    // No maximum: a hostile stream could send any number of elements.
    #[vmstate(list)]
    unbounded: Vec<E>,
    // A list has no count field.
    #[vmstate(list, count = n, max = 4)]
    counted: Vec<E>,
    // A list is read into a Vec or a VecDeque.
    #[vmstate(list, max = 4)]
    wrong_container: [E; 4],
    // A tree is a BTreeMap.
    #[vmstate(tree, max = 4)]
    not_a_map: Vec<E>,
    // Both at once.
    #[vmstate(list, tree, max = 4)]
    both: Vec<E>,
    // Unknown list form.
    #[vmstate(list = "slist", max = 4)]
    slist: Vec<E>,
    // Without the attribute.
    plain_deque: VecDeque<E>,
    plain_map: BTreeMap<u64, E>,
}

fn main() {}
