fn main() {
    use vmstate_runtime::VmState;
    let v = serde_json::json!({
        "catalog": examples_devices::catalog(),
        "devices": [
            examples_devices::SerialSection::SCHEMA.to_json(),
            examples_devices::I8254::SCHEMA.to_json(),
            examples_devices::Mc146818Rtc::SCHEMA.to_json(),
            examples_devices::watchdog::DemoWatchdog::SCHEMA.to_json(),
        ]
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}
