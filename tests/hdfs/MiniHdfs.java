// A single-node HDFS (Hadoop's MiniDFSCluster: one name node, one data node, on 127.0.0.1) for
// the integration tests. Run by tests/it/support/hdfs.rs as a single-file program:
//
//     java -cp '.test-deps/hdfs/libs/*' tests/hdfs/MiniHdfs.java BASE_DIR [NAMENODE_PORT]
//
// It prints `ready hdfs://127.0.0.1:<port>` once the cluster accepts writes, then runs until
// its standard input closes (or it is killed), and shuts the cluster down.

import java.io.File;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

public class MiniHdfs {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: MiniHdfs BASE_DIR [NAMENODE_PORT]");
            System.exit(2);
        }
        File base = new File(args[0]);
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 0;

        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.getAbsolutePath());
        conf.set("dfs.replication", "1");
        // Small blocks would make many; the lake's files are small anyway.
        conf.set("dfs.namenode.safemode.extension", "0");
        // Data node addresses as the client must reach them.
        conf.set("dfs.datanode.hostname", "127.0.0.1");

        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
                .nameNodePort(port)
                .numDataNodes(1)
                .format(true)
                .build();
        cluster.waitActive();
        System.out.println("ready hdfs://127.0.0.1:" + cluster.getNameNodePort());
        System.out.flush();

        Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown));
        // Until the harness closes our standard input.
        while (System.in.read() != -1) {
        }
        cluster.shutdown();
        System.exit(0);
    }
}
