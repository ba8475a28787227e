// Round-trip check for the local dev broker: `infra/kafka.sh smoke`.
// Run with the broker's own jars (java single-file source launcher, Java 17):
//   java -cp 'infra/kafka/libs/*' infra/kafka/Smoke.java 127.0.0.1:9092
// Creates a throw-away topic (3 partitions), produces one record (idempotent producer,
// acks=all), consumes it back with a fresh consumer group, then deletes the topic.
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Smoke {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:9092";
        String suffix = UUID.randomUUID().toString().substring(0, 8);
        String topic = "infra-smoke-" + suffix;
        String payload = "hello-" + suffix;
        long t0 = System.nanoTime();

        Properties common = new Properties();
        common.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);

        try (Admin admin = Admin.create(common)) {
            String cluster = admin.describeCluster().clusterId().get();
            int nodes = admin.describeCluster().nodes().get().size();
            System.out.printf("cluster id %s, %d node(s)%n", cluster, nodes);
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
            System.out.println("created topic " + topic);

            Properties pp = new Properties();
            pp.putAll(common);
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            RecordMetadata md;
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                md = producer.send(new ProducerRecord<>(topic, "key-" + suffix, payload)).get();
            }
            System.out.printf("produced to %s-%d@%d%n", md.topic(), md.partition(), md.offset());

            Properties cp = new Properties();
            cp.putAll(common);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, "infra-smoke-" + suffix);
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            boolean found = false;
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 30_000;
                while (!found && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        System.out.printf("consumed %s-%d@%d %s=%s%n", r.topic(), r.partition(), r.offset(), r.key(), r.value());
                        found |= payload.equals(r.value());
                    }
                }
                if (found) consumer.commitSync();
            }
            admin.deleteTopics(List.of(topic)).all().get();
            admin.deleteConsumerGroups(List.of("infra-smoke-" + suffix)).all().get();
            if (!found) {
                System.err.println("SMOKE FAILED: record not consumed within 30s");
                System.exit(1);
            }
        }
        System.out.printf("SMOKE OK (%.1fs)%n", (System.nanoTime() - t0) / 1e9);
    }
}
