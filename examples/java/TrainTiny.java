// TrainTiny: the Java binding end to end, like examples/c/train_tiny.c: the `tiny` preset
// trained for 50 steps on the demo's data, saved, loaded back, and the same forward pass
// through both models.
//
//   java -cp libswitch.jar:. TrainTiny CONFIG OUT   (the jar carries its native libraries)
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.libswitch.Batch;
import org.libswitch.Config;
import org.libswitch.ForwardOutput;
import org.libswitch.LibSwitch;
import org.libswitch.Metrics;
import org.libswitch.Model;
import org.libswitch.TrainConfig;
import org.libswitch.Trainer;

public class TrainTiny {
  public static void main(String[] args) throws Exception {
    String configPath = args.length > 0 ? args[0] : "examples/train/demo-switch.textproto";
    String out = args.length > 1 ? args[1] : Files.createTempDirectory("train_tiny_java").toString();
    System.out.println("libswitch " + LibSwitch.version());
    try (TrainConfig train = TrainConfig.fromText(Files.readString(Path.of(configPath)));
        Config config = Config.preset("tiny")) {
      train.set("steps", 50).set("batch_size", 8).set("warmup_steps", 10).set("eval_batches", 2);
      config.set("vocab_size", 2176).set("routing_group", "GROUP_BATCH");
      try (Model model = new Model(config, "cpu", 0); Trainer trainer = new Trainer(model, train)) {
        for (int step = 1; step <= 50; ++step) {
          Metrics m = trainer.step();
          if (step == 1 || step % 10 == 0) {
            System.out.printf("step %3d  loss %.4f  ce %.4f  aux %.5f%n", m.step(), m.loss(), m.ce(), m.aux());
          }
        }
        System.out.printf("held-out loss %.4f%n", trainer.evaluate().loss());
        String checkpoint = trainer.save(out);
        System.out.println("saved " + checkpoint);
        Batch batch = new Batch(new int[][] {{72, 101, 108, 108, 111, 1}, {87, 111, 114, 108, 100, 1}},
            new int[][] {{0, 33, 34}, {0, 35, 36}}).labels(new int[][] {{33, 34, 1}, {35, 36, 1}});
        try (Model loaded = Model.load(checkpoint, "cpu")) {
          ForwardOutput a = model.forward(batch);
          boolean same = Arrays.equals(a.logits(), loaded.forward(batch).logits());
          System.out.printf("forward: loss %.4f; reloaded model: %s%n", a.loss(),
              same ? "same logits" : "DIFFERENT logits");
          System.exit(same ? 0 : 1);
        }
      }
    }
  }
}
