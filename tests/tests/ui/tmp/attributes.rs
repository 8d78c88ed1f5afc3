use vmstate_runtime::{Tmp, TmpView, VmState};

#[derive(VmState, Clone, Default)]
#[vmstate(name = "view", version = 0, nested)]
struct View {
    x: u8,
}

impl TmpView<Dev> for View {
    type Error = String;
    fn save_view(d: &Dev) -> Result<Self, String> {
        Ok(View { x: d.x })
    }
    fn load_view(self, d: &mut Dev) -> Result<(), String> {
        d.x = self.x;
        Ok(())
    }
}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev", version = 1)]
struct Dev {
    n: u8,
    // A temporary view is laid out as its view: no other layout applies.
    #[vmstate(buffer, vmdesc_type = "mine")]
    tmp: Tmp<View>,
    #[vmstate(count = n, max = 2)]
    tmp2: Tmp<View>,
    #[vmstate(skip)]
    x: u8,
}

fn main() {}
