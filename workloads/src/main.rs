fn main() { println!("mqlab: under construction"); }
